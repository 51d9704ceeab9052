"""The engine: a checked workflow compiled into a Prefect flow, and the scheduler that is
that flow's body."""
