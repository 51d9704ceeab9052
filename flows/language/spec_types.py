"""The building blocks of the spec models (spec.py, step_parts.py): the base model, the
names' patterns, and a declared input. Pure data: no Prefect, no I/O."""

from __future__ import annotations

import keyword
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

StepId = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=64)]
AgentName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)]
# What a step names: an agent of its agents file, or `block:NAME`, an AgentConfig block that
# the run loads from the Prefect server (agentflow.blocks).
AgentRef = Annotated[str, Field(pattern=r"^(block:)?[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=106)]
BLOCK_PREFIX = "block:"
Callable_ = Annotated[str, Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")]
Criticality = Literal["critical", "high", "medium", "low"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


INPUT_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,),
    "array": (list,), "object": (dict,),
}
# Input names that cannot be a flow parameter: Python keywords, and Prefect's own keyword
# arguments of a flow call.
RESERVED_INPUTS = frozenset(keyword.kwlist) | {"return_state", "wait_for", "self"}
class InputSpec(_Model):
    type: Literal["string", "integer", "number", "boolean", "array", "object"] = "string"
    default: Any = None
    description: str = ""
    enum: list[Any] | None = None
    # A secret is never stored in clear (run records, cache keys, results, Prefect's database)
    # and is taken from -i or the environment variable AGENTFLOW_SECRET_<NAME>.
    secret: bool = False

    @property
    def required(self) -> bool:
        return "default" not in self.model_fields_set

    @model_validator(mode="after")
    def _default_fits(self) -> "InputSpec":
        if self.secret and (self.type != "string" or "default" in self.model_fields_set or self.enum):
            raise ValueError("a secret input is a string with no default and no enum (a value written in "
                             "the file is not secret); pass it with -i or AGENTFLOW_SECRET_<NAME>")
        if "default" not in self.model_fields_set or self.default is None:
            return self
        if not isinstance(self.default, INPUT_TYPES[self.type]) or (
                isinstance(self.default, bool) and self.type in ("integer", "number")):
            got = type(self.default).__name__
            hint = (" (YAML reads yes/no/on/off unquoted as true/false: quote it)"
                    if isinstance(self.default, bool) and self.type == "string" else "")
            raise ValueError(f"the default is {got} {self.default!r}, not {self.type}{hint}")
        if self.enum is not None and self.default not in self.enum:
            raise ValueError(f"the default {self.default!r} is not one of its enum {self.enum}")
        return self
