"""`agentflow diff` and `agentflow apply`: a run's work (its steps' patches), shown or applied here."""

from __future__ import annotations

import sys
from typing import Optional

import typer

from agentflow.flows.cli._app import EXIT_INVALID, app, err, out


def _work(run_id: str) -> tuple[str, object, list]:
    """The run's full id, its base and its steps' changes; exit 2, saying why, if it has none here."""
    from agentflow.flows.durability.history import RunNotFound, find_run
    from agentflow.flows.engine import deliver

    try:
        run = find_run(run_id)
    except RunNotFound as exc:
        err.print(str(exc), markup=False)
        raise typer.Exit(EXIT_INVALID) from None
    base, entries = deliver.recorded(run.id)
    if base is None:
        err.print(f"run {run.id} worked in no workspace (it did not run in a git repository, or ran before "
                  "agentflow captured work): it has no work to show", markup=False)
        raise typer.Exit(EXIT_INVALID)
    return run.id, base, entries


@app.command()
def diff(
    run_id: str = typer.Argument(..., help="The run (its id, or a unique prefix)."),
    step: Optional[str] = typer.Argument(None, help="Only this step's changes."),
    stat: bool = typer.Option(False, "--stat", help="Only the files each step changed, with line counts."),
) -> None:
    """A run's work: each step's patch, in the order it joined the run's tree."""
    from agentflow.flows.durability import worktrees
    from agentflow.tasks import workspace

    full_id, _, entries = _work(run_id)
    chosen = [e for e in entries if step is None or e[1] == step]
    if not chosen:
        err.print(f"run {full_id}: {'step `' + step + '` changed no file' if step else 'no step changed a file'}",
                  markup=False)
        raise typer.Exit(1)
    store = worktrees.patch_store()
    for label, _, changes in chosen:
        out.print(f"# step {label}: {changes.brief()} (patch {changes.patch[:12]})", markup=False, highlight=False)
        if stat:
            for f in changes.files:
                counts = "binary" if f.added is None else f"+{f.added} -{f.deleted}"
                moved = f" (from {f.old_path})" if f.old_path else ""
                out.print(f"  {f.action:<8} {f.path}{moved}  {counts}", markup=False, highlight=False)
            continue
        sys.stdout.flush()
        sys.stdout.buffer.write(workspace.read_patch(store, changes.patch))
        sys.stdout.buffer.flush()


@app.command("apply")
def apply_work(run_id: str = typer.Argument(..., help="The run (its id, or a unique prefix).")) -> None:
    """Apply a run's work to this working tree (refused, changing nothing, if it would
    overwrite changes of yours)."""
    from agentflow.flows.engine import deliver

    full_id, base, entries = _work(run_id)
    if not entries:
        out.print(f"run {full_id}: no step changed a file; nothing to apply", markup=False)
        return
    start, final = deliver.rebuild(base, [changes for _, _, changes in entries])
    try:
        files = deliver.apply_to_tree(base.top, start, final)
    except deliver.DeliveryRefused as exc:
        err.print(str(exc).replace("RUN", full_id), markup=False)
        raise typer.Exit(1) from None
    out.print(f"applied run {full_id}'s work to {base.top}: {len(files)} file{'s' if len(files) != 1 else ''}",
              markup=False)
    for name in files:
        out.print(f"  {name}", markup=False, highlight=False)


@app.command()
def gc(dry_run: bool = typer.Option(False, "--dry-run", help="Only list what would be removed.")) -> None:
    """Remove the worktrees no running process works in (a crashed run's: its resume makes its
    tree again from its pinned commit and its journal)."""
    from agentflow.flows.durability import worktrees

    stale = worktrees.left_behind()
    for directory in stale:
        if not dry_run:
            worktrees.remove_left_behind(directory)
        out.print(f"{'would remove' if dry_run else 'removed'} {directory}", markup=False)
    out.print(f"{len(stale)} worktree{'s' if len(stale) != 1 else ''} {'to remove' if dry_run else 'removed'} "
              f"({worktrees.worktrees_root()})", markup=False)
