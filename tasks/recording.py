"""Agent calls kept in a recording, and answered from one (or from a test's canned answers).

`agentflow run --record FILE` keeps every agent call of the run: which step and agent, what
the agent was asked (the request as its identity sees it), and what came back (the answer,
its failure, and the changes it made as a git patch); and what was decided at each approval. `--replay FILE` and `agentflow test`
answer each agent call from a recording or from answers a test gives per agent: no agent is
called, so no key and no network are needed. Commands (`run:`) and `call:` steps are not
agents: they run for real. A call that nothing answers fails its step, naming what differs
from the nearest recorded call, and never reaches a real agent.

An answer's patch is applied to the call's workspace as the agent would have changed it, so
the step's captured work (tasks/workspace.py `captured`) is the recorded one.
"""

from __future__ import annotations

import base64
import json
import threading
from contextvars import ContextVar
from typing import Any

from agentflow.errors import AgentUnavailable, StepFailed
from agentflow.flows.language.answers import Answer, ApprovalAnswer, RecordedCall, RecordedDecision, Recording
from agentflow.git import git
from agentflow.tasks.request import AgentRequest
from agentflow.tasks.results import AgentResult

class Recorder:
    """Collects the agent calls of a run (task runs call from several threads)."""

    def __init__(self, workflow: str, version: str):
        self.recording = Recording(workflow=workflow, version=version)
        self._lock = threading.Lock()

    def note(self, request: AgentRequest, result: AgentResult | None, error: BaseException | None) -> None:
        if error is not None:
            answer = (Answer(unavailable=str(error) or True) if isinstance(error, AgentUnavailable)
                      else Answer(fail=str(error) or type(error).__name__))
        else:
            assert result is not None
            answer = Answer(status=result.status, summary=result.summary, output=result.output, data=result.data,
                            metrics=result.metrics, confidence=result.confidence, error=result.error,
                            **_patch_of(request, result))
        call = RecordedCall(step=request.step, label=request.label, agent=request.agent or "",
                            request=_compact(request.key_view()), answer=answer)
        with self._lock:
            self.recording.calls.append(call)

    def decided(self, step: str, decision: dict[str, Any]) -> None:
        """What a person (or the approval's timeout) decided at `step`."""
        kept = RecordedDecision(step=step, approve=bool(decision.get("approved")), comment=decision.get("comment") or "",
                                fields=decision.get("fields") or {}, by=str(decision.get("decided_by") or ""))
        with self._lock:
            self.recording.decisions.append(kept)


class Replayer:
    """Answers agent calls: first from a test's answers for the agent (`canned`: one answer,
    or a list taken in turn, its last repeating), then from a recording's calls with the same
    request (taken in the order they were recorded, the last repeating: a retried call)."""

    def __init__(self, recording: Recording | None = None, canned: dict[str, list[Answer]] | None = None,
                 source: str = "the recording", commands: dict[str, Answer] | None = None,
                 approvals: dict[str, ApprovalAnswer] | None = None):
        self.calls = recording.calls if recording is not None else []
        self.decisions = recording.decisions if recording is not None else []
        self.canned = canned or {}
        self.source = source
        self.commands = commands or {}  # by step: stand-ins for its `run:` command
        self.approvals = approvals or {}  # by step: how a person answers it
        self._taken: dict[Any, int] = {}
        self._lock = threading.Lock()

    def answer(self, request: AgentRequest) -> Answer:
        agent = request.agent or ""
        if agent in self.canned:
            return self._next(("agent", agent), self.canned[agent])
        view = _canonical(_compact(request.key_view()))
        same = [c.answer for c in self.calls if c.agent == agent and _canonical(_compact(c.request)) == view]
        if same:
            return self._next(("request", agent, view), same)
        raise StepFailed(f"step call `{request.label}`: agent {agent}'s call is not in {self.source}: "
                         f"{self._nearest(request)}; record the run again (agentflow run --record), or answer the "
                         f"agent in the test (agents: {{{agent}: {{summary: ...}}}})", retryable=False)

    def command(self, request: AgentRequest) -> Answer | None:
        """A test's stand-in for the step's command, if it gives one."""
        return self.commands.get(request.step) if request.agent is None else None

    def approval(self, step: str) -> ApprovalAnswer | None:
        """How the approval at `step` is answered: by the test, else as the recording's run
        decided it (in turn, when it was asked more than once); None: nobody answers it here."""
        if step in self.approvals:
            return self.approvals[step]
        recorded = [d for d in self.decisions if d.step == step]
        return self._next(("approval", step), recorded).answer() if recorded else None

    def _next(self, key: Any, answers: list[Any]) -> Any:
        with self._lock:
            index = self._taken.get(key, 0)
            self._taken[key] = index + 1
        return answers[min(index, len(answers) - 1)]

    def _nearest(self, request: AgentRequest) -> str:
        """What differs between this call and the recorded call of the same step most like it."""
        view = _compact(request.key_view())
        ofstep = [c for c in self.calls if c.step == request.step]
        if not ofstep:
            recorded = sorted({c.step for c in self.calls})
            return (f"it holds no call of step `{request.step}`"
                    + (f" (it holds steps {', '.join(recorded[:8])})" if recorded else " (it holds no call)"))
        agent = request.agent or ""
        if not any(c.agent == agent for c in ofstep):
            held = sorted({c.agent for c in ofstep})
            return f"it holds no call of agent {agent} in step `{request.step}` (it holds {', '.join(held)}'s)"
        ofstep = [c for c in ofstep if c.agent == agent]
        best = min(ofstep, key=lambda c: len(_differing(_compact(c.request), view)))
        recorded = _compact(best.request)
        return f"the nearest recorded call ({best.label}) differs in " + "; ".join(
            _difference(name, recorded.get(name), view.get(name)) for name in _differing(recorded, view)[:3])


def result_of(answer: Answer) -> AgentResult:
    """The answer as the backend would have returned it; StepFailed for a failure."""
    if answer.unavailable:
        raise AgentUnavailable(answer.unavailable if isinstance(answer.unavailable, str) else "unavailable (as answered)")
    if answer.fail is not None:
        raise StepFailed(answer.fail)
    return AgentResult(status=answer.status, summary=answer.summary, output=answer.output, data=answer.data,
                       metrics=answer.metrics, confidence=answer.confidence, error=answer.error)


def apply_answer(request: AgentRequest, answer: Answer) -> AgentResult:
    """The answer's result, its patch applied to the call's workspace first."""
    result = result_of(answer)
    patch = answer.patch.encode() or base64.b64decode(answer.patch_base64)
    if patch and request.workspace is not None:
        done = git(request.workspace.dir, "apply", "--binary", "--whitespace=nowarn", env=request.workspace.env(),
                   input=patch)
        if done.returncode != 0:
            raise StepFailed(f"step call `{request.label}`: the recorded changes do not apply to its tree: "
                             f"{done.stderr.decode(errors='replace').strip()[:300]}; record the run again",
                             retryable=False)
    return result


# The run's recorder or replayer: set by the command around the flow call; task runs see it
# (Prefect copies the context into the threads that run them).
RECORDING: ContextVar[Recorder | None] = ContextVar("agentflow_recording", default=None)
REPLAYING: ContextVar[Replayer | None] = ContextVar("agentflow_replaying", default=None)


def _patch_of(request: AgentRequest, result: AgentResult) -> dict[str, str]:
    changes = result.changes
    if changes is None or changes.empty or request.workspace is None:
        return {}
    from agentflow.tasks.workspace import read_patch

    patch = read_patch(request.workspace.store, changes.patch)
    try:
        return {"patch": patch.decode("utf-8")}
    except UnicodeDecodeError:
        return {"patch_base64": base64.b64encode(patch).decode()}


def _compact(view: dict[str, Any]) -> dict[str, Any]:
    """The request without its empty parts: what a reader of the recording needs to see."""
    return {k: v for k, v in view.items() if v not in (None, "", [], {})}


def _canonical(view: dict[str, Any]) -> str:
    return json.dumps(view, sort_keys=True, default=str)


def _differing(recorded: dict[str, Any], now: dict[str, Any]) -> list[str]:
    return sorted(k for k in set(recorded) | set(now) if _canonical({"v": recorded.get(k)}) != _canonical({"v": now.get(k)}))


def _difference(name: str, recorded: Any, now: Any) -> str:
    if isinstance(recorded, str) and isinstance(now, str):
        at = next((i for i, (a, b) in enumerate(zip(recorded, now)) if a != b), min(len(recorded), len(now)))
        start = max(0, at - 20)
        return (f"{name} from character {at}: recorded {recorded[start:at + 40]!r}, now {now[start:at + 40]!r}")
    return f"{name}: recorded {_short(recorded)}, now {_short(now)}"


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:77] + "..."
