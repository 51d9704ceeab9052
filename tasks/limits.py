"""Per-agent `concurrency`: a Prefect global concurrency limit named after the agent.

The limit lives on the server, so it holds across every process and worker that calls the
agent. Prefect lets a call through an undefined limit without a word, so the run creates
or updates each limit before its first step (`ensure`), and a call then takes a slot
strictly (a limit deleted meanwhile fails the call instead of being ignored).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from contextlib import contextmanager

_UNSAFE = re.compile(r"[^a-z0-9_-]+")


def limit_name(agent: str) -> str:
    readable = _UNSAFE.sub("-", agent.lower()).strip("-")[:80]
    return f"agentflow-agent-{readable}-{hashlib.sha256(agent.encode()).hexdigest()[:8]}"


def ensure(limits: dict[str, int]) -> None:
    """Create or update the limit of each agent (agent name -> slots)."""
    if not limits:
        return
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectAlreadyExists

    with get_client(sync_client=True) as client:
        for agent, slots in sorted(limits.items()):
            try:
                client.upsert_global_concurrency_limit_by_name(limit_name(agent), slots)
            except ObjectAlreadyExists:
                # Another run created it between our read and our create (the upsert is not
                # atomic): it exists now, so this second upsert only updates it if needed.
                client.upsert_global_concurrency_limit_by_name(limit_name(agent), slots)


@contextmanager
def slot(agent: str) -> Iterator[None]:
    """Hold one of the agent's slots for the length of a call (waits for one to free)."""
    from prefect.concurrency.sync import concurrency

    with concurrency(limit_name(agent), occupy=1, strict=True):
        yield
