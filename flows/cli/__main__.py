from agentflow.flows.cli import main

main()
