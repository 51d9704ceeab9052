"""A/B variants of an agent: which configuration a call uses.

An agent with `variants:` has two or more configurations with weights. A call's variant is
picked from the run's id and the step's id, by a hash, so that it is the same for every
call of that step in that run (its retries, its items, a resume) and spread over runs in
proportion to the weights. The variant is part of the call's cache key (its configuration's
digest, and its name in the request), of its audit line and of every metric of the step.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from agentflow.flows.language.spec import AgentSpec


@dataclass(frozen=True)
class Variant:
    name: str
    weight: float
    spec: AgentSpec  # the agent as this variant configures it
    digest: str  # of that configuration: what the call's key holds in place of the agent's


def pick(variants: tuple[Variant, ...], run_id: str | None, step: str) -> Variant | None:
    """The variant of `step`'s calls in run `run_id` (None if the agent has no variants)."""
    if not variants:
        return None
    digest = hashlib.sha256(f"{run_id or ''}\0{step}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") / 2**64 * sum(v.weight for v in variants)
    for variant in variants:
        point -= variant.weight
        if point < 0:
            return variant
    return variants[-1]  # rounding at the very top
