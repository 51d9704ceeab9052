"""agentflow's workflow language and its compilation into Prefect flows.

Names are imported lazily so that `flows.cli` can set Prefect's settings before Prefect is
imported: Prefect reads them once, at import.
"""

from typing import Any

from flows import _prefect_env

_prefect_env.apply(_prefect_env.RELIABLE)

__all__ = ["AgentflowError", "SpecError", "build_flow", "load_workflow"]


def __getattr__(name: str) -> Any:
    if name == "build_flow":
        from flows.compile import build_flow

        return build_flow
    if name == "load_workflow":
        from flows.loader import load_workflow

        return load_workflow
    if name in ("AgentflowError", "SpecError"):
        from flows import errors

        return getattr(errors, name)
    raise AttributeError(f"module 'flows' has no attribute {name!r}")
