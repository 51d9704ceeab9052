"""What the Prefect UI shows of a run besides its task runs.

- the run's log: a line when each step ends, with its summary (or why it failed, was skipped,
  or came from the cache or the journal), in place of Prefect's `Finished in state ...`
  (engine/prefect_logs.py); its start is in agentflow's own log (`agentflow logs`), and the
  UI shows it as its task run, running. One line a step: each is a row the server writes
  (benchmarks/ SC);
- artifacts: the result of each agent step, failed or degraded step, or step that wrote
  files, as markdown (summary, files created and modified, metrics, degraded flags) on its
  task run; a progress bar that advances as steps end; a table of every step when the run
  ends; and the markdown reports the workflow wrote (repo-health's);
- Prefect events for every step outcome and the run's (engine/announce.py).

Artifacts cost an API call each: they are sent by a thread of their own, so a step never
waits for one, and the run waits at its end only for what is still queued (bounded).
Artifact keys follow Prefect's rule (lowercase letters, digits, dashes): the same key in
every run of a workflow, so the UI's Artifacts page shows each step's latest result and
its history.
"""

from __future__ import annotations

import json
import logging
import queue
import re
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from agentflow import log
from agentflow.printable import counted
from agentflow.errors import StepFailed
from agentflow.flows.durability import settling, worktrees
from agentflow.flows.engine import announce, prefect_logs
from agentflow.flows.engine.jobs import StepFinished
from agentflow.flows.engine.result import WorkflowResult
from agentflow.tasks import workspace
from agentflow.tasks.results import AgentResult

_log = logging.getLogger("agentflow")
_KEY_JUNK = re.compile(r"[^a-z0-9]+")
_PROGRESS_EVERY_S = 1.0  # a bar in the UI: once a second is enough, and each move is an API call
# The run's log lines reach the server a batch at a time, as Prefect's own log worker sends them
# (every 2 s by its default): a batch waits at most this long, or until it holds _LOGS_BATCH
# lines. Sent as they came, a 5-step run cost the server 7 log calls instead of 1-2 (benchmarks/ B5).
_LOGS_EVERY_S = 1.0
_LOGS_BATCH = 200
_DRAIN_S = 10.0  # at most this long at a run's end for artifacts still queued
_REPORT_MAX_BYTES = 256 * 1024
_REPORT_SUFFIXES = (".md", ".markdown")


def artifact_key(*parts: str) -> str:
    """`finance-feature`, `review` -> `finance-feature-review` (Prefect: [a-z0-9-] only)."""
    key = "-".join(_KEY_JUNK.sub("-", part.lower()).strip("-") for part in parts if part)
    return key[:100].strip("-") or "agentflow"


def outcome_of(result: AgentResult, cached: bool, reused: bool) -> str:
    """completed | failed | skipped | cached | reused | degraded: what a step came to."""
    if result.status == "failed":
        return "failed"
    if result.status == "skipped":
        return "skipped"
    if reused:
        return "reused"
    if cached:
        return "cached"
    return "degraded" if result.degraded else "completed"


def step_markdown(workflow: str, step: str, result: AgentResult, outcome: str, duration: float | None,
                  attempts: int, diff: str = "") -> str:
    """The step's page in the UI; `diff`: its patch as text, if it changed files."""
    took = f"{duration:.1f}s" if duration is not None else "-"
    lines = [f"# {workflow} · {step}: {outcome}", "", result.summary or "(no summary)", "",
             f"- status: **{result.status}**, {took}, {attempts} {'try' if attempts == 1 else 'tries'}"]
    if result.degraded and result.fallback_used:
        lines.append(f"- **degraded**: answered by `{result.fallback_used}` in place of `{result.primary_agent}`")
    if result.skipped_agent:
        lines.append(f"- **skipped**: no agent could answer for `{result.skipped_agent}`")
    if result.error and result.status == "failed":
        lines += ["", "## Why it failed", "", "```", result.error[:4000], "```"]
    if result.artifacts:
        lines += ["", "## Files", ""] + [f"- {a.action}: `{a.path}`" for a in result.artifacts[:100]]
    if result.changes is not None and result.changes.unbacked_claims:
        lines += ["", "**Claimed but not changed** (the answer names them; the patch does not): "
                  + ", ".join(f"`{p}`" for p in result.changes.unbacked_claims[:20])]
    if diff:
        cut = len(diff) > _DIFF_CHARS
        lines += ["", f"## Changes ({result.changes.brief() if result.changes else ''})", "", "```diff",
                  diff[:_DIFF_CHARS].replace("```", "` ``"), "```"]
        if cut:
            lines.append(f"(the first {_DIFF_CHARS} characters; `agentflow diff RUN {step}` prints it whole)")
    if result.metrics:
        lines += ["", "## Metrics", "", "| metric | value |", "|---|---|"]
        lines += [f"| {name} | {value} |" for name, value in list(result.metrics.items())[:50]]
    return "\n".join(lines) + "\n"


_DIFF_CHARS = 20_000  # of a step's patch on its page in the UI


def _diff_of(result: AgentResult) -> str:
    """The step's patch as text (binary parts as git writes them), or "" if it changed nothing."""
    if result.changes is None or result.changes.empty:
        return ""
    try:
        return workspace.read_patch(worktrees.patch_store(), result.changes.patch)[:_DIFF_CHARS + 1].decode(
            errors="replace")
    except (StepFailed, OSError, ValueError):
        return ""


def run_table(outcome: WorkflowResult) -> list[dict[str, Any]]:
    rows = []
    for step, o in outcome.steps.items():
        degraded = o.result is not None and o.result.degraded and o.status != "skipped"
        status = outcome_of(o.result, o.cached, o.reused) if o.result is not None else o.status
        rows.append({"step": step, "status": "degraded" if degraded and status == "completed" else status,
                     "time_s": round(o.duration_s, 2) if o.duration_s is not None else None,
                     "tries": o.attempts, "summary": o.summary[:300]})
    for step, o in outcome.compensations.items():
        rows.append({"step": f"undo {step}", "status": o.status, "time_s": None, "tries": 1, "summary": o.summary[:300]})
    return rows


class Publisher:
    """The log lines, artifacts and events of one flow run (made in the flow run)."""

    def __init__(self, workflow: str, run_id: str, steps: int):
        self.workflow, self.run_id, self.steps = workflow, run_id, steps
        self.done = 0
        self._lines: list[dict[str, Any]] = []  # log lines not sent yet (sent in batches)
        self._queue: queue.Queue = queue.Queue()
        self._progress: float | None = None  # the latest, sent by the thread when it is due
        # The thread's own: the bar's artifact, the value it shows, when it was last moved (the
        # run's start, at first: a run that ends within a second makes it once, at 100).
        self._progress_id: Any = None
        self._progress_sent: float | None = None
        self._progress_sent_at = time.monotonic()
        self._lock = threading.Lock()
        self._logger = log.logger(component="engine")
        self._lines_due: float | None = None  # when the oldest line not sent yet must be
        self._thread = threading.Thread(target=self._send, name="agentflow-artifacts", daemon=True)
        self._thread.start()
        prefect_logs.describing(run_id, True)  # its steps' ends: our line in the UI, not Prefect's too

    # ---- called by the scheduler --------------------------------------------------------
    def started(self, label: str, agent: str | None = None, attempt: int = 1) -> None:
        # agentflow's log only: in the UI the step's task run shows it running, and a line there
        # is a row the server writes for every step (benchmarks/ SC).
        self._logger.info(f"step {label}: started", step=label, agent=agent, attempt=attempt, ui=False)

    def step_done(self, done: StepFinished) -> None:
        """A step ended: its log line, its outcome event and metrics, its page, the progress."""
        step, result, duration, attempts, agent = done.step, done.result, done.duration, done.attempts, done.agent
        variant, skip_reason, cache_calls, task_run_id = done.variant, done.skip_reason, done.cache_calls, done.task_run_id
        outcome = outcome_of(result, done.cached, done.reused)
        took = f" in {duration:.1f}s" if duration is not None and outcome != "skipped" else ""
        how = {"cached": " (from the cache)", "reused": " (done before the resume: from the journal)"}.get(outcome, "")
        said = result.summary or "(no summary)"
        # A skipped step's summary says so and why ("skipped: `false` is false"): not twice.
        line = (f"step {step}: {said}" if outcome == "skipped" and said.startswith("skipped")
                else f"step {step}: {outcome}{took}{how}: {said}")
        worrying = outcome in ("failed", "degraded") or result.skipped_agent  # not a `when` that was false
        self._logger.log(logging.WARNING if worrying else logging.INFO, line, step=step, agent=agent, variant=variant,
                         attempt=attempts, outcome=outcome, duration_s=None if duration is None else round(duration, 3),
                         fallback=result.fallback_used, error=result.error[:500] if outcome == "failed" and result.error
                         else None)
        spent = done.spend or {}
        announce.step_outcome(self.workflow, self.run_id, step, result, outcome, agent, skip_reason, {
            "duration_s": None if duration is None else round(duration, 4), "attempts": attempts,
            "cache_hits": cache_calls[0], "cache_misses": cache_calls[1],
            "tokens": spent.get("tokens") or 0, "cost_usd": spent.get("usd") or 0.0, "variant": variant})
        if agent is not None or outcome in ("failed", "degraded") or result.skipped_agent or result.artifacts:
            diff = _diff_of(result)
            # A page of its own for an agent's answer, a failure, or files written; a quick
            # command or function that went well is a row of the run's table (an artifact is an
            # API call: noise next to an agent call, not next to a 2 ms step: benchmarks/ B1).
            self._queue.put(("markdown", (artifact_key(self.workflow, step), f"{step}: {outcome}",
                                          step_markdown(self.workflow, step, result, outcome, duration, attempts,
                                                        diff),
                                          task_run_id)))
        with self._lock:
            self.done += 1
            self._progress = min(100.0, 100.0 * self.done / max(self.steps, 1))
        self._queue.put(("due", None))  # wakes the thread: it moves the bar when that is due

    def close(self, outcome: WorkflowResult, workdir: str | None = None, task_runs_ended: int | None = None) -> None:
        """The run's table, its reports (read in `workdir`, the run's workspace, else here),
        its outcome event and how many task runs it ended (durability/settling.py); then wait
        (bounded) for the thread to send what is queued."""
        prefect_logs.describing(self.run_id, False)
        failed = outcome.status == "failed"
        self._logger.log(logging.WARNING if failed else logging.INFO,
                         f"run {self.run_id}: {outcome.status} ({counted(len(outcome.steps), 'step')})", outcome=outcome.status)
        announce.run_outcome(self.workflow, self.run_id, outcome)
        self._queue.put(("table", (artifact_key(self.workflow, "steps"), f"{self.workflow}: every step",
                                   run_table(outcome))))
        for step, path in _reports(outcome, workdir):
            self._queue.put(("markdown", (artifact_key(self.workflow, "report", path.stem),
                                          f"report written by step {step}: {path}",
                                          path.read_text(encoding="utf-8", errors="replace"), None)))
        with self._lock:
            self._progress = 100.0
        if task_runs_ended is not None:
            self._queue.put(("ended", task_runs_ended))
        self._queue.put(None)
        self._thread.join(_DRAIN_S)
        if self._thread.is_alive():
            _log.warning("agentflow: run %s: some artifacts were not sent within %gs", self.run_id, _DRAIN_S)

    def ui_line(self, level: int, message: str) -> None:
        """A line of the run's log in the UI: where agentflow/log.py routes this run's lines.
        Prefect's run logger cost 2-3 ms a line on this machine (a model built and checked per
        record): the lines are kept here and sent in batches by the thread, one API call for many."""
        from datetime import datetime, timezone

        line = {"name": "agentflow", "level": level, "message": message,
                "timestamp": datetime.now(timezone.utc).isoformat(), "flow_run_id": self.run_id}
        with self._lock:
            self._lines.append(line)
            first, full = len(self._lines) == 1, len(self._lines) == _LOGS_BATCH
        if first or full:  # wakes the thread: it sends the batch when it is due, or full
            self._queue.put(("due", None))

    # ---- the sending thread -------------------------------------------------------------
    def _send(self) -> None:
        from prefect.client.orchestration import get_client

        try:
            with get_client(sync_client=True) as client:
                while True:
                    try:
                        item = self._queue.get(timeout=self._until_due())
                    except queue.Empty:
                        item = ("due", None)
                    try:
                        if item is not None:
                            self._one(client, item)
                        self._send_due(client, final=item is None)  # at the end, whatever is left
                    except Exception as exc:  # noqa: BLE001 - an artifact never fails the run
                        _log.warning("agentflow: run %s: an artifact was not sent: %s", self.run_id, exc)
                    if item is None:
                        return
        except Exception as exc:  # noqa: BLE001 - no client: the run goes on without artifacts
            _log.warning("agentflow: run %s: artifacts are not sent: %s", self.run_id, exc)

    # Log lines and the progress bar wait until they are due: lines at most _LOGS_EVERY_S after
    # the first of a batch, the bar at most once per _PROGRESS_EVERY_S. The thread sleeps on its
    # queue until the nearest of the two (or something else comes).
    def _until_due(self) -> float | None:
        now = time.monotonic()
        with self._lock:
            if self._lines and self._lines_due is None:
                self._lines_due = now + _LOGS_EVERY_S
            waits = [self._lines_due] if self._lines else []
            if self._progress is not None and self._progress != self._progress_sent:
                waits.append(self._progress_sent_at + _PROGRESS_EVERY_S)
        return max(0.0, min(waits) - now) if waits else None

    def _send_due(self, client: Any, final: bool) -> None:
        from prefect.client.schemas.actions import ArtifactCreate, ArtifactUpdate

        now = time.monotonic()
        with self._lock:
            lines: list[dict[str, Any]] = []
            if self._lines and (final or len(self._lines) >= _LOGS_BATCH
                                or (self._lines_due is not None and now >= self._lines_due)):
                lines, self._lines, self._lines_due = self._lines, [], None
            value = self._progress
        if lines:
            client.create_logs(lines)
        if value is None or value == self._progress_sent:
            return
        if not (final or value == 100.0 or now >= self._progress_sent_at + _PROGRESS_EVERY_S):
            return
        self._progress_sent, self._progress_sent_at = value, now
        if self._progress_id is None:  # made with its first value: a call fewer than made at 0, then moved
            self._progress_id = client.create_artifact(ArtifactCreate(
                key=artifact_key(self.workflow, "progress"), type="progress", data=value,
                description=f"{self.workflow}: steps ended", flow_run_id=self.run_id)).id
        else:
            client.update_artifact(self._progress_id, ArtifactUpdate(data=value))

    def _one(self, client: Any, item: tuple) -> None:
        from prefect.client.schemas.actions import ArtifactCreate

        kind, payload = item
        if kind == "ended":  # a label on the flow run, not an artifact: what `agentflow status` waits for
            client.update_flow_run_labels(uuid.UUID(self.run_id), {settling.LABEL: payload})
        elif kind == "markdown":
            key, description, text, task_run_id = payload
            client.create_artifact(ArtifactCreate(key=key, type="markdown", data=text, description=description,
                                                  flow_run_id=self.run_id, task_run_id=task_run_id))
        elif kind == "table":
            key, description, rows = payload
            client.create_artifact(ArtifactCreate(key=key, type="table", data=json.dumps(rows),
                                                  description=description, flow_run_id=self.run_id))


def _reports(outcome: WorkflowResult, workdir: str | None = None) -> list[tuple[str, Path]]:
    """Markdown files the run's steps say they wrote, inside the directory it works in."""
    here = Path(workdir or Path.cwd()).resolve()
    found: list[tuple[str, Path]] = []
    for step, o in outcome.steps.items():
        for artifact in (o.result.artifacts if o.result is not None else []):
            if artifact.action not in ("created", "modified") or not artifact.path.endswith(_REPORT_SUFFIXES):
                continue
            path = (here / artifact.path).resolve()
            try:
                if path.is_relative_to(here) and path.is_file() and path.stat().st_size <= _REPORT_MAX_BYTES:
                    found.append((step, path))
            except OSError:
                continue
    return found
