"""Prefect Block types for agent configurations and credentials (arrives with the agent backends)."""
