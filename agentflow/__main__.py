"""`python -m agentflow ...` is the `agentflow` command."""

from agentflow.flows.cli import main

main()
