"""`agentflow test`: a workflow's test cases, each a real run with its agents answered offline.

A case runs the workflow on Prefect like any run (its steps, conditions, retries, fallback
ladder, approvals and workspace are the real ones), with three differences: each agent call
is answered by the case (tasks/recording.py), never by the agent; nothing is read from or
written to the step cache, so a case sees only its own answers and a real run never sees
them; and its work is delivered nowhere (no branch, your tree untouched). What the run comes
to is compared with the case's `expect`, and every difference is said.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentflow.errors import AgentflowError, InputError, SpecError
from agentflow.flows.engine.result import WorkflowResult, result_of
from agentflow.flows.language.answers import read_recording
from agentflow.flows.language.inputs import validate_inputs
from agentflow.flows.language.testfile import Case, Expect
from agentflow.tasks import recording


@dataclass
class CaseOutcome:
    name: str
    differences: list[str] = field(default_factory=list)
    seconds: float = 0.0
    run_id: str = ""

    @property
    def passed(self) -> bool:
        return not self.differences


def run_case(resolved: Any, case: Case, test_file: Path) -> CaseOutcome:
    """Run one case of `test_file` against the loaded workflow; what differs from its expect."""
    from agentflow.flows.engine.compile import build_flow

    started = time.monotonic()
    outcome = CaseOutcome(case.name)
    try:
        values = validate_inputs(resolved.spec, case.inputs)
        recorded = read_recording(test_file.parent / case.recording) if case.recording else None
    except (InputError, SpecError) as exc:
        outcome.differences.append(f"the case cannot run: {exc}")
        return outcome
    replayer = recording.Replayer(recorded, case.answers(), commands=case.commands, approvals=case.approvals,
                                  source=case.recording or f"case {case.name!r} (give the agent an answer or a recording)")
    offline = resolved.model_copy(update={"spec": resolved.spec.model_copy(update={"deliver": "none"})})
    token = recording.REPLAYING.set(replayer)
    try:
        state = build_flow(offline, cache="off")(**values, return_state=True)
        result = result_of(state)
    except AgentflowError as exc:
        outcome.differences.append(f"the run could not start: {exc}")
        return outcome
    finally:
        recording.REPLAYING.reset(token)
    outcome.seconds = time.monotonic() - started
    if result is None:
        outcome.differences.append(f"the run ended {state.name} without a result: {state.message}")
        return outcome
    outcome.run_id = result.run_id or ""
    outcome.differences = compare(case.expect, result)
    return outcome


def compare(expect: Expect, result: WorkflowResult) -> list[str]:
    """Each way the run differs from what was expected, one line each."""
    found: list[str] = []
    if expect.status is not None and result.status != expect.status:
        failed = f" (failed steps: {', '.join(result.failed_steps)})" if result.failed_steps else ""
        found.append(f"status: expected {expect.status}, got {result.status}{failed}")
    for step, wanted in expect.steps.items():
        outcome = result.steps.get(step)
        if outcome is None:
            found.append(f"steps.{step}: the workflow has no such step")
            continue
        got = outcome.result
        checks: list[tuple[str, Any, Any]] = [
            ("status", wanted.status, outcome.status), ("attempts", wanted.attempts, outcome.attempts),
            ("degraded", wanted.degraded, got.degraded if got else None),
            ("fallback_used", wanted.fallback_used, got.fallback_used if got else None)]
        for name, want, have in checks:
            if want is not None and want != have:
                found.append(f"steps.{step}.{name}: expected {want!r}, got {have!r}{_why(outcome, name)}")
        if wanted.summary is not None and not re.search(wanted.summary, outcome.summary):
            found.append(f"steps.{step}.summary: expected a match of {wanted.summary!r}, got {outcome.summary!r}")
        if wanted.data is not None:
            found += [f"steps.{step}.data{where}" for where in _data_differs(wanted.data, got.data if got else None)]
        if wanted.files is not None:
            changed = sorted(f.path for f in got.changes.files) if got and got.changes else []
            if sorted(wanted.files) != changed:
                found.append(f"steps.{step}.files: expected {sorted(wanted.files)}, got {changed}")
    if expect.max_cost_usd is not None and float(result.spend.get("usd", 0)) > expect.max_cost_usd:
        found.append(f"cost: expected at most ${expect.max_cost_usd:g}, got ${float(result.spend['usd']):g}")
    return found


def _why(outcome: Any, name: str) -> str:
    """The step's own words, when its status is not the one expected."""
    return f" ({outcome.summary[:200]})" if name == "status" and outcome.summary else ""


def _data_differs(want: Any, have: Any, where: str = "") -> list[str]:
    """Where `have` differs from `want`: a dict must hold `want`'s keys (more are allowed)."""
    if isinstance(want, dict) and isinstance(have, dict):
        found = []
        for key, value in want.items():
            if key not in have:
                found.append(f"{where}.{key}: expected {value!r}, it is missing")
            else:
                found += _data_differs(value, have[key], f"{where}.{key}")
        return found
    return [] if want == have else [f"{where}: expected {want!r}, got {have!r}"]
