"""How the CLI shows a run: a live line per step event as it happens, then a table of
every step, rendered from the `WorkflowResult` the flow returned."""

from __future__ import annotations

import threading
from typing import Any

from rich.console import Console
from rich.markup import escape as _markup_escape
from rich.table import Table

from agentflow.events import StepEvent
from agentflow.printable import one_line
from agentflow.flows.engine.result import WorkflowResult

_STYLE = {"cached": "blue", "reused": "blue", "success": "green", "failed": "red", "skipped": "yellow",
          "degraded": "yellow",
          "completed_with_errors": "yellow", "not_run": "dim"}
_WORD = {"cached": "cached", "reused": "reused", "success": "done", "failed": "failed", "skipped": "skipped",
         "degraded": "degraded",
         "completed_with_errors": "partial", "not_run": "not run"}


def _display(status: str, cached: bool, reused: bool, degraded: bool = False) -> str:
    """`reused`: done before the run was resumed; `cached`: answered from the step cache;
    `degraded`: answered by a fallback agent."""
    if status != "success":
        return status
    return "reused" if reused else "cached" if cached else "degraded" if degraded else status


class ProgressView:
    """Listens to step events (from several threads) and prints them as they come."""

    def __init__(self, console: Console, ui: str | None = None):
        self.console = console
        self.ui = ui  # the server's UI, where each run has a page
        self.fanned_out: set[str] = set()  # steps that ran as several task runs
        self.run_id: str | None = None
        self.labels_by_key: dict[str, str] = {}
        self.waited: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, event: StepEvent) -> None:
        with self._lock:
            self._show(event)

    def _show(self, event: StepEvent) -> None:
        label = escape(event.label)
        if event.kind == "run_started":
            self.run_id = event.label
            again = f" (attempt {event.attempt})" if event.attempt > 1 else ""
            self.console.print(f"run {event.label}{again}", markup=False)
            if self.ui:
                self.console.print(f"   ui  {self.ui}/runs/flow-run/{event.label}", markup=False)
            # Out at once even into a pipe: if this process is killed, this is the id to resume.
            self.console.file.flush()
        elif event.kind == "waiting":
            if event.cache_key in self.waited:
                return
            self.waited.add(event.cache_key or "")
            name = escape(self.labels_by_key.get(event.cache_key or "", "a step"))
            self.console.print(f"[cyan]   wait[/]  {name}  [dim]another run is making the same call; "
                               "waiting for its result[/]")
        elif event.kind == "started":
            if event.cache_key:
                self.labels_by_key[event.cache_key] = event.label
            if not event.label.endswith("(skipped)"):
                self.console.print(f"[cyan]  start[/]  {label}")
        elif event.kind == "workspace":
            style, word = ("yellow", "warning") if event.status == "warning" else ("dim", "   work")
            self.console.print(f"[{style}]{word}[/]  [dim]{escape(event.summary)}[/]")
        elif event.kind == "approval":
            self.console.print(f"[yellow]    ask[/]  {label}  [dim]{escape(event.summary)}[/]")
            self.console.file.flush()
        elif event.kind == "activity":
            self.console.print(f"[dim]      …  {label}  {escape(_one_line(event.summary))}[/]")
        elif event.kind == "fallback":
            self.console.print(f"[yellow]fallback[/] {label} [dim]{escape(event.summary)}[/]")
        elif event.kind == "retrying":
            self.console.print(f"[magenta]  retry[/]  {label} (attempt {event.attempt})")
        elif event.kind == "finished":
            if event.label != event.step and not event.label.endswith(" (skipped)"):
                self.fanned_out.add(event.step)
            status = _display(event.status, event.cached, event.reused, event.degraded)
            self._line(status, label.removesuffix(" (skipped)"), event.duration_s, event.summary)
        elif event.kind == "step_finished":
            if event.status == "not_run":
                self.console.print(f"[dim]not run  {label}  {escape(event.summary)}[/]")
            elif event.step in self.fanned_out:
                # for_each, repeat and fallbacks: one line for the step as a whole, after its calls
                status = _display(event.status, event.cached, event.reused, event.degraded)
                self._line(status, label, event.duration_s, event.summary)

    def _line(self, status: str, name: str, duration_s: float | None, summary: str) -> None:
        style = _STYLE.get(status, "white")
        took = f" {duration_s:.1f}s" if duration_s is not None else ""
        self.console.print(f"[{style}]{_WORD.get(status, status):>7}[/]  {name}{took}  "
                           f"[dim]{escape(_one_line(summary))}[/]")

def table(result: WorkflowResult) -> Table:
    """Every step of the run: status, time, tries, summary."""
    table = Table(title=None, show_lines=False, expand=False)
    table.add_column("step")
    table.add_column("status")
    table.add_column("time", justify="right")
    table.add_column("tries", justify="right")
    changed = any(o.result is not None and o.result.changes is not None for o in result.steps.values())
    if changed:  # the run worked in a workspace: what each step changed in it
        table.add_column("files", justify="right")
    table.add_column("summary", overflow="fold", max_width=80)
    for step, outcome in result.steps.items():
        degraded = outcome.result is not None and outcome.result.degraded
        status = _display(outcome.status, outcome.cached, outcome.reused, degraded)
        style = _STYLE.get(status, "white")
        took = f"{outcome.duration_s:.1f}s" if outcome.duration_s is not None else "-"
        files = [_files(outcome.result)] if changed else []
        table.add_row(step, f"[{style}]{_WORD.get(status, status)}[/]", took, str(outcome.attempts), *files,
                      escape(_one_line(outcome.summary)))
    for step, outcome in result.compensations.items():  # the saga, newest step first
        status = _display(outcome.status, False, False, False)
        table.add_row(f"undo {step}", f"[{_STYLE.get(status, 'white')}]{_WORD.get(status, status)}[/]", "-", "1",
                      *([""] if changed else []), escape(_one_line(outcome.summary)))
    return table


def _files(result: Any) -> str:
    changes = result.changes if result is not None else None
    return changes.brief() if changes is not None else ""


def work_text(result: WorkflowResult) -> str:
    """What became of the run's work: the branch it was delivered to, and whether it was
    applied to the user's tree; or nothing if it worked in no workspace."""
    work = result.work
    if not work or work.get("workspace") is None:
        return ""
    commits = len(work.get("commits") or [])
    if not commits:
        return "work: no step changed a file"
    said = f"work: {commits} step{'s' if commits != 1 else ''} changed files"
    if work.get("branch"):
        said += f"; branch {work['branch']}"
    if work.get("applied") is not None:
        said += f"; applied to your tree ({len(work['applied'])} files)"
    elif work.get("refused"):
        said += f"; [yellow]not applied[/]: {escape(work['refused'])}"
    elif work.get("workspace") == "in-place":
        said += " in place"
    elif not work.get("branch"):
        said += f"; see it with agentflow diff {result.run_id}"
    return said


def degraded_text(result: WorkflowResult) -> str:
    """`; 2 steps degraded (answered by a fallback), 1 skipped`, or nothing."""
    degraded = [s for s, o in result.steps.items() if o.result is not None and o.result.degraded
                and o.status != "skipped"]
    skipped = [s for s, o in result.steps.items() if o.result is not None and o.result.skipped_agent]
    parts = []
    if degraded:
        parts.append(f"{len(degraded)} step{'s' if len(degraded) > 1 else ''} degraded (answered by a fallback: "
                     f"{', '.join(degraded)})")
    if skipped:
        parts.append(f"{len(skipped)} skipped because no agent could answer ({', '.join(skipped)})")
    return "; " + "; ".join(parts) if parts else ""


def spend_text(spend: dict[str, Any]) -> str:
    """`; agents spent $0.0431 and 10734 tokens`, or nothing when they reported nothing."""
    usd, tokens = spend.get("usd") or 0, spend.get("tokens") or 0
    if not usd and not tokens:
        return ""
    return f"; agents spent ${usd:.4f} and {tokens} tokens"


def as_json(result: WorkflowResult, state: str) -> dict[str, Any]:
    """The `--json` document: the run, and each step's outcome with its result."""
    return {"workflow": result.workflow, "version": result.version, "run_id": result.run_id, "state": state,
            "spend": result.spend, "work": result.work,
            "compensations": {step: {"status": o.status, "summary": o.summary} for step, o in result.compensations.items()},
            "steps": {step: {"status": o.status, "summary": o.summary, "duration_s": o.duration_s,
                             "attempts": o.attempts, "cached": o.cached, "reused": o.reused,
                             **({"result": o.result.context()} if o.result is not None else {})}
                      for step, o in result.steps.items()}}


def _one_line(text: str) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line if len(line) <= 100 else line[:97] + "..."


def escape(text: str) -> str:
    """Text from a step, an agent or an input, for rich: its markup escaped, its control
    characters and line breaks shown rather than acted on (agentflow/printable.py)."""
    return _markup_escape(one_line(text))
