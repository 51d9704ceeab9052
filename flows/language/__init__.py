"""The workflow language: pure data models, the YAML loader with line numbers, the checks,
the safe expressions, the sandboxed templates and the step graph. Imports nothing of
Prefect, the engine or the tasks."""
