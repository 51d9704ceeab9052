"""The steps prefect.yaml runs: where the project is, when it is deployed and when it runs.

`prefect deploy` runs `project_directory` (a build step) in the project, and puts its answer in
the deployment's pull step, `enter_project`, which a worker runs before the flow: the flow
then works in the project, where its workflows and repository are. A worker whose checkout is
elsewhere (another machine) says where with AGENTFLOW_PROJECT_DIR.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ENV = "AGENTFLOW_PROJECT_DIR"


def project_directory() -> dict[str, str]:
    """Build step: the directory `prefect deploy` runs in (the project's root)."""
    return {"directory": str(Path.cwd())}


def enter_project(directory: str) -> dict[str, str]:
    """Pull step: work in the project (AGENTFLOW_PROJECT_DIR, else where it was deployed from)."""
    target = Path(os.environ.get(PROJECT_ENV) or directory).expanduser()
    if not (target / "workflows").is_dir():
        raise FileNotFoundError(f"agentflow: the project is not at {target} (no workflows/ folder there); "
                                f"start the worker with {PROJECT_ENV} set to this machine's checkout")
    os.chdir(target)
    return {"directory": str(target)}
