"""Secret inputs not given are taken from the environment: AGENTFLOW_SECRET_<NAME>.

How a secret reaches a run without being written anywhere: `agentflow run` and `resume`
read it there when -i does not give it, and a deployed run (whose parameters Prefect stores)
always takes it from its worker's environment.
"""

from __future__ import annotations

import os
from typing import Any

from agentflow.flows.language.inputs import secret_env
from agentflow.flows.language.spec import Workflow


def with_secrets_from_env(spec: Workflow, given: dict[str, Any]) -> dict[str, Any]:
    """Secret inputs not given are taken from AGENTFLOW_SECRET_<NAME>, if set."""
    found = {name: os.environ[secret_env(name)] for name, input_spec in spec.inputs.items()
             if input_spec.secret and name not in given and secret_env(name) in os.environ}
    return {**given, **found}
