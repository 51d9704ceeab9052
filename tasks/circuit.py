"""A circuit breaker per agent, its state kept on the Prefect server so that every process
and worker using that server sees the same circuit.

closed: calls go through; `failures` consecutive failed calls open it.
open: calls fail at once (CircuitOpen, an AgentUnavailable: the ladder goes to the
fallback without calling the agent) until `cooldown` has passed since it opened.
half-open: one call (the probe) goes through; its success closes the circuit, its failure
opens it again. While the probe runs, other calls are refused as if open.

The state is a Prefect Variable per agent (`agentflow-circuit-<agent>`), read before a call
and written when it changes. Two processes that fail at the same moment may both count
their failure once: the breaker is a guard against hammering a failing agent, not a lock.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

from agentflow.errors import AgentUnavailable

_log = logging.getLogger("agentflow")
_UNSAFE = re.compile(r"[^a-z0-9_-]+")
# A probe that has not reported back within this long is taken as lost (its process died).
PROBE_GRACE_S = 600.0


class CircuitOpen(AgentUnavailable):
    """The agent's circuit is open: it is not called."""


@dataclass(frozen=True)
class Circuit:
    state: str = "closed"  # closed | open | half_open
    failures: int = 0
    since: float = 0.0  # when it opened, or when the probe started

    def view(self) -> dict[str, Any]:
        return {"state": self.state, "failures": self.failures, "since": self.since}


def variable_name(agent: str) -> str:
    """A Prefect Variable name (lowercase letters, digits, - and _) unique to the agent."""
    readable = _UNSAFE.sub("-", agent.lower()).strip("-")[:80]
    digest = hashlib.sha256(agent.encode()).hexdigest()[:8]
    return f"agentflow-circuit-{readable}-{digest}"


def read(agent: str) -> Circuit:
    from prefect.variables import Variable

    value = Variable.get(variable_name(agent), default=None)
    if not isinstance(value, dict):
        return Circuit()
    try:
        return Circuit(state=str(value["state"]), failures=int(value["failures"]), since=float(value["since"]))
    except (KeyError, TypeError, ValueError):
        return Circuit()  # a damaged value: start closed rather than refuse every call


def _write(agent: str, circuit: Circuit) -> None:
    from prefect.variables import Variable

    # The agent's name goes with its state: the metrics exporter labels circuits by it.
    Variable.set(variable_name(agent), {**circuit.view(), "agent": agent}, tags=["agentflow", "circuit"],
                 overwrite=True)


def before_call(agent: str, failures: int, cooldown: float) -> Circuit:
    """The circuit as this call finds it; raises CircuitOpen if the agent is not to be called."""
    now = time.time()
    circuit = read(agent)
    if circuit.state == "open":
        if now - circuit.since < cooldown:
            wait = cooldown - (now - circuit.since)
            raise CircuitOpen(f"agent `{agent}`'s circuit is open after {circuit.failures} failures in a row; "
                              f"not called (it is tried again in {wait:.0f}s)")
        circuit = Circuit("half_open", circuit.failures, now)  # this call is the probe
        _write(agent, circuit)
        _log.info("agentflow: agent %s: circuit half-open, probing", agent)
    elif circuit.state == "half_open" and now - circuit.since < PROBE_GRACE_S:
        raise CircuitOpen(f"agent `{agent}`'s circuit is half-open and another call is probing it; not called")
    return circuit


def after_call(agent: str, circuit: Circuit, ok: bool, failures: int) -> None:
    """Record the call's outcome: close on success, count a failure, open at the threshold."""
    if ok:
        if circuit.state != "closed" or circuit.failures:
            _write(agent, Circuit())
            if circuit.state != "closed":
                _log.info("agentflow: agent %s: circuit closed", agent)
        return
    count = circuit.failures + 1
    if circuit.state == "half_open" or count >= failures:
        _write(agent, Circuit("open", count, time.time()))
        _log.warning("agentflow: agent %s: circuit open after %d failure(s) in a row", agent, count)
    else:
        _write(agent, Circuit("closed", count, 0.0))


def no_verdict(agent: str, circuit: Circuit, cooldown: float) -> None:
    """The call could not be made for a reason that is not the agent's (a key not set): a
    probe it was gives its turn back, so that the next call probes instead."""
    if circuit.state == "half_open":
        _write(agent, Circuit("open", circuit.failures, time.time() - cooldown))
