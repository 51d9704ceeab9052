"""prefect.yaml generation and the Python client for deployments (arrives with deployments)."""
