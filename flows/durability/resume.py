"""Deciding whether and how a run can be finished (`agentflow resume`) or partly run again
(`agentflow rerun --from`): the run's state, its pinned record, and what changed since.

The engine then does it (engine/restart.py): resume starts the same Prefect flow run again,
whose body takes every completed call from the run's journal (durability/journal.py); rerun
starts a new flow run whose journal is seeded with the old run's calls, except those of the
step asked for and everything downstream of it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentflow.errors import AgentflowError, ConfigError
from agentflow.git import git
from agentflow.flows.durability import crash, records, worktrees
from agentflow.flows.durability.history import RunRow, find_run
from agentflow.flows.durability.repo import read_repo_state
from agentflow.flows.language import canonical, graph
from agentflow.flows.language.loader import load_workflow
from agentflow.flows.language.spec import ResolvedWorkflow


class ResumeRefused(AgentflowError):
    """The run cannot be resumed (or rerun) as asked; the message says why and what to do."""


class NothingToResume(AgentflowError):
    """The run already completed."""


@dataclass
class Prepared:
    run_id: str
    record: records.RunRecord
    workflow: ResolvedWorkflow
    state: str  # the run's state before this (Crashed, Failed, Cancelled...)
    changes: list[str] = field(default_factory=list)  # how the definition differs from the run's
    notes: list[str] = field(default_factory=list)  # worth telling the user (commit moved...)


def prepare_resume(row: RunRow, force: bool = False) -> Prepared:
    """The run (as `history.find_run` found it) ready to be resumed here, or why not."""
    state, record = _resumable(row, force)
    if record is None:
        record = _record(row.id)
    prepared = _load(row.id, record, state)
    if prepared.changes and not force:
        raise ResumeRefused(
            f"the definition of run {row.id} changed since it started ({record.source}):\n  - "
            + "\n  - ".join(prepared.changes)
            + "\nresume finishes the run as it was defined: undo the change, or `agentflow resume --force` to "
              "go on with the new definition (changed steps and what depends on them run again), or "
              f"`agentflow rerun {row.id[:8]} --from STEP`")
    return prepared


def prepare_worker_resume(row: RunRow, force: bool = False) -> tuple[str, bool]:
    """A deployed run that may be handed back to its work pool (a worker finishes it, taking
    its completed calls from the journal in shared result storage): its state before, and
    whether its record was found in the storage this machine uses (the workers' too, when it
    is the server's default). Refused without a record unless forced: a worker would run
    every step again."""
    state, record = _resumable(row, force)
    if record is None and not force:
        raise ResumeRefused(f"run {row.id} has no agentflow record in the storage this machine uses "
                            f"({_looked(row.id)}), the server's default result storage that workers use unless "
                            "told otherwise: a worker would run every step again. Resume it where the workers' "
                            "storage is configured (`agentflow storage show`), or `agentflow resume --force` to "
                            "hand it back anyway")
    return state, record is not None


def _resumable(row: RunRow, force: bool) -> tuple[str, records.RunRecord | None]:
    """The run's state, and its record when this machine has it; refused if it has nothing
    left to do or may still be running."""
    state = crash.check(row.id, row.state)
    if state in ("Completed", "Cached"):
        raise NothingToResume(f"run {row.id} already completed; `agentflow rerun {row.id[:8]} --from STEP` "
                              "runs a step and what follows it again")
    record = records.read_record(row.id)
    if state == "Suspended":
        raise ResumeRefused(f"run {row.id} is {row.label(state)}, with no process: once answered (the UI's Resume, "
                            f"or `agentflow approve {row.id[:8]}`) a worker runs it on")
    if state in crash.ACTIVE and record is None and not force:
        raise ResumeRefused(f"run {row.id} is {row.label(state)} on the server, and the storage this machine uses has "
                            f"no agentflow record of it ({_looked(row.id)}), so nothing here says whether its process "
                            "still runs, and its completed steps cannot be reused from here: resume it where its "
                            "storage is reachable (`agentflow storage show`)")
    if state in crash.ACTIVE:
        where = record.attempts[-1] if record is not None and record.attempts else None
        alive = where.alive() if where is not None else None
        if alive or not force:
            whom = f"pid {where.pid} on {where.host}" if where else "its process"
            raise ResumeRefused(f"run {row.id} is still {row.label(state)} ({whom}); wait for it to end or stop it "
                                "(kill the process)" + ("" if alive else "; if that machine died, "
                                                        "`agentflow resume --force` takes the run over"))
    return state, record


def prepare_rerun(run_id: str, from_step: str) -> tuple[Prepared, set[str]]:
    """The run to rerun from, and the steps that will run again."""
    row = find_run(run_id)
    state = crash.check(row.id, row.state)
    if state in crash.ACTIVE or state == "Suspended":
        raise ResumeRefused(f"run {row.id} is still {row.label(state)}; rerun it once it has ended")
    prepared = _load(row.id, _record(row.id), state)
    steps = [s.id for s in prepared.workflow.spec.steps]
    if from_step not in steps:
        raise ResumeRefused(f"workflow `{prepared.workflow.spec.name}` has no step `{from_step}`; "
                            f"its steps: {', '.join(steps)}")
    again = {from_step} | graph.downstream(prepared.workflow.dependencies, from_step)
    return prepared, again


def _record(run_id: str) -> records.RunRecord:
    record = records.read_record(run_id)
    if record is None:
        raise ResumeRefused(f"run {run_id} has no agentflow record in the storage this machine uses "
                            f"({_looked(run_id)}): it "
                            "was not started by agentflow, or with another result storage, so its completed steps "
                            "cannot be reused from here; resume it where that storage is reachable (`agentflow "
                            "storage show` says which one this machine uses; `agentflow storage set` shares one "
                            "between machines)")
    if record.source.startswith("<"):
        raise ResumeRefused(f"run {run_id} was defined from {record.source}, not a file: resume it from Python "
                            "with agentflow.flows.engine.restart.resume(...) after loading the same definition")
    return record


def _looked(run_id: str) -> str:
    return records.where(records.run_key(run_id, "run.json"))


def _here(run_id: str, record: records.RunRecord) -> records.RunRecord:
    """The record with its workflow file and working directory as found on this machine: the
    same files in the checkout the command runs in (another machine's, or another clone), else
    where they were."""
    found = git(os.getcwd(), "rev-parse", "--show-toplevel")
    top = os.path.realpath(found.stdout.decode().strip()) if found.returncode == 0 else ""
    candidate = Path(top, record.source_rel) if top and record.source_rel else None
    if top and top != record.top and candidate is not None and candidate.is_file():
        return record.model_copy(update={"source": str(candidate), "cwd": str(Path(top, record.cwd_rel or "."))})
    if Path(record.source).is_file() and Path(record.cwd).is_dir():
        return record
    commit = (record.repo.get("commit") or "")[:12]
    at = f" at commit {commit}" if commit else ""
    if not record.source_rel:
        raise ResumeRefused(f"run {run_id} was defined in {record.source}, which no longer exists; "
                            "restore the file to resume the run")
    if candidate is None or not candidate.is_file():
        here = f"{candidate} does not exist" if candidate else f"{os.getcwd()} is not in a git repository"
        raise ResumeRefused(f"run {run_id} was defined in {record.source_rel} of its repository (started in "
                            f"{record.top or record.cwd}{at}); here {here}: run `agentflow resume` from a "
                            f"checkout of that repository{at}")
    return record


def _load(run_id: str, record: records.RunRecord, state: str) -> Prepared:
    record = _here(run_id, record)
    workflow = load_workflow(record.source)  # a SpecError says what is wrong with it now
    prepared = Prepared(run_id=run_id, record=record, workflow=workflow, state=state)
    if workflow.spec_hash != record.spec_hash:
        prepared.changes = _describe_changes(record.definition, canonical.workflow_definition(workflow.spec, workflow.agents))
        if not prepared.changes:  # same content, other hash: say so rather than nothing
            prepared.changes = [f"version {record.spec_hash} -> {workflow.spec_hash}"]
    _pinned(run_id, record.cwd)  # refused now if this checkout lacks the commit the run works from
    repo = read_repo_state(record.cwd).key_part()
    if record.repo.get("commit") and repo != record.repo:
        before, now = record.repo.get("commit", "")[:10], (repo.get("commit") or "none")[:10]
        what = f"the commit moved ({before} -> {now})" if before != now else "uncommitted changes differ"
        pinned = _pinned(run_id, record.cwd)
        rest = ("the rest run on the tree it pinned (its worktree, made again), not on yours as it is now"
                if pinned is not None and pinned.mode == "worktree" else "the rest run on the tree as it is now")
        prepared.notes.append(f"{what} since the run started: completed steps are kept, {rest}")
    return prepared


def _pinned(run_id: str, cwd: str) -> worktrees.Base | None:
    base = worktrees.read_base(run_id)
    try:
        return worktrees.here(base, cwd) if base is not None else None
    except ConfigError as exc:
        raise ResumeRefused(f"run {run_id} cannot be resumed here: {exc}") from None


def _describe_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between two definitions (language.canonical.workflow_definition), as short phrases."""
    changes: list[str] = []
    old_spec, new_spec = old.get("spec", {}), new.get("spec", {})
    old_steps = {s["id"]: s for s in old_spec.get("steps", [])}
    new_steps = {s["id"]: s for s in new_spec.get("steps", [])}
    for step_id in new_steps.keys() - old_steps.keys():
        changes.append(f"step `{step_id}` was added")
    for step_id in old_steps.keys() - new_steps.keys():
        changes.append(f"step `{step_id}` was removed")
    for step_id in old_steps.keys() & new_steps.keys():
        fields = _differing(old_steps[step_id], new_steps[step_id])
        if fields:
            changes.append(f"step `{step_id}` changed: {', '.join(fields)}")
    if [s for s in old_steps if s in new_steps] != [s for s in new_steps if s in old_steps]:
        changes.append("the steps' order changed")
    rest = _differing({k: v for k, v in old_spec.items() if k != "steps"},
                      {k: v for k, v in new_spec.items() if k != "steps"})
    changes += [f"`{name}` changed" for name in rest]
    old_agents, new_agents = old.get("agents", {}), new.get("agents", {})
    for name in sorted(old_agents.keys() | new_agents.keys()):
        if name not in new_agents:
            changes.append(f"agent `{name}` was removed")
        elif name not in old_agents:
            changes.append(f"agent `{name}` was added")
        elif old_agents[name] != new_agents[name]:
            changes.append(f"agent `{name}` changed: {', '.join(_differing(old_agents[name], new_agents[name]))}")
    return sorted(changes)


def _differing(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
