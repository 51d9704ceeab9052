"""`python -m agentflow ...` and the `agentflow` console script: the `agentflow` command."""

from agentflow import startup

startup.collect_later()  # before the command's imports (agentflow/startup.py)

from agentflow.flows.cli import main  # noqa: E402

if __name__ == "__main__":
    main()
