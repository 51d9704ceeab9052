"""The work pools deployed workflows run on: a `process` pool, created if it is missing."""

from __future__ import annotations


def ensure_process_pool(name: str) -> bool:
    """Create the process work pool `name` unless it exists; whether it was created."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(name)
            return False
        except ObjectNotFound:
            pass
        try:
            client.create_work_pool(WorkPoolCreate(name=name, type="process"))
        except ObjectAlreadyExists:  # another process created it meanwhile
            return False
    return True
