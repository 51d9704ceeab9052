"""The CLI's live view of a run: a line per step event, then a table of every step."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from agentflow.events import StepEvent

_STYLE = {"cached": "blue", "reused": "blue", "success": "green", "failed": "red", "skipped": "yellow",
          "completed_with_errors": "yellow", "not_run": "dim"}
_WORD = {"cached": "cached", "reused": "reused", "success": "done", "failed": "failed", "skipped": "skipped",
         "completed_with_errors": "partial", "not_run": "not run"}


@dataclass
class StepRow:
    step: str
    status: str
    duration_s: float | None
    summary: str
    attempts: int = 1
    result: object = None
    cached: bool = False
    reused: bool = False


def _display(status: str, cached: bool, reused: bool) -> str:
    """`reused`: done before the run was resumed; `cached`: answered from the step cache."""
    if status != "success":
        return status
    return "reused" if reused else "cached" if cached else status


class ProgressView:
    """Listens to step events (from several threads) and prints them as they come."""

    def __init__(self, console: Console, order: list[str]):
        self.console = console
        self.order = order
        self.rows: dict[str, StepRow] = {}
        self.attempts: dict[str, int] = {}
        self.fanned_out: set[str] = set()  # steps that ran as several task runs
        self.run_id: str | None = None
        self.labels_by_key: dict[str, str] = {}
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
            # Out at once even into a pipe: if this process is killed, this is the id to resume.
            self.console.file.flush()
        elif event.kind == "waiting":
            name = escape(self.labels_by_key.get(event.cache_key or "", "a step"))
            self.console.print(f"[cyan]   wait[/]  {name}  [dim]another run is making the same call; "
                               "waiting for its result[/]")
        elif event.kind == "started":
            if event.cache_key:
                self.labels_by_key[event.cache_key] = event.label
            if not event.label.endswith("(skipped)"):
                self.console.print(f"[cyan]  start[/]  {label}")
        elif event.kind == "retrying":
            self.attempts[event.step] = max(self.attempts.get(event.step, 1), event.attempt)
            self.console.print(f"[magenta]  retry[/]  {label} (attempt {event.attempt})")
        elif event.kind == "finished":
            if event.label != event.step and not event.label.endswith(" (skipped)"):
                self.fanned_out.add(event.step)
            status = _display(event.status, event.cached, event.reused)
            self._line(status, label.removesuffix(" (skipped)"), event.duration_s, event.summary)
        elif event.kind == "step_finished":
            if event.status == "not_run":
                self.console.print(f"[dim]not run  {label}  {escape(event.summary)}[/]")
            elif event.step in self.fanned_out:
                # for_each and repeat: one line for the step as a whole, after its items
                self._line(event.status, label, event.duration_s, event.summary)
            self.rows[event.step] = StepRow(event.step, event.status, event.duration_s, event.summary,
                                            self.attempts.get(event.step, 1), event.result, event.cached,
                                            event.reused)

    def _line(self, status: str, name: str, duration_s: float | None, summary: str) -> None:
        style = _STYLE.get(status, "white")
        took = f" {duration_s:.1f}s" if duration_s is not None else ""
        self.console.print(f"[{style}]{_WORD.get(status, status):>7}[/]  {name}{took}  "
                           f"[dim]{escape(_one_line(summary))}[/]")

    def table(self) -> Table:
        table = Table(title=None, show_lines=False, expand=False)
        table.add_column("step")
        table.add_column("status")
        table.add_column("time", justify="right")
        table.add_column("tries", justify="right")
        table.add_column("summary", overflow="fold", max_width=80)
        for step in self.order:
            row = self.rows.get(step) or StepRow(step, "not_run", None, "")
            status = _display(row.status, row.cached, row.reused)
            style = _STYLE.get(status, "white")
            took = f"{row.duration_s:.1f}s" if row.duration_s is not None else "-"
            table.add_row(step, f"[{style}]{_WORD.get(status, status)}[/]", took, str(row.attempts),
                          escape(_one_line(row.summary)))
        return table


def _one_line(text: str) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line if len(line) <= 100 else line[:97] + "..."
