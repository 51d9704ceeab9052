"""The workflow language (`language`), its execution on Prefect (`engine`), what makes runs
durable (`durability`) and the `agentflow` command (`cli`). See ARCHITECTURE.md."""
