"""A step's work: the changes it made to its workspace, as data (DESIGN.md §4).

A `Changes` is part of a step's `AgentResult`: the files with their action and line counts,
and the patch itself by its digest (the patch's bytes live in the run's patch store,
content-addressed: tasks/workspace.py writes and reads them). It is JSON, so it is kept in
the cache, the journal and `--json` like the rest of the result, and whatever reuses a
result (a cache hit, a resume) finds the patch to bring the work back.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Action = Literal["created", "modified", "deleted", "renamed"]


class FileChange(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str
    action: Action
    added: int | None = None  # lines; None for a binary file
    deleted: int | None = None
    old_path: str | None = None  # a rename's source


class Changes(BaseModel):
    """What one step call changed, from the tree it saw (`base`) to the tree it left (`tree`):
    git tree ids, which name the content exactly."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base: str
    tree: str
    patch: str = ""  # sha256 of the patch's bytes ("" when nothing changed)
    bytes: int = 0
    files: list[FileChange] = Field(default_factory=list)
    # `Created:`/`Modified:` lines of the agent's answer that the patch does not back
    unbacked_claims: list[str] = Field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.files

    def counts(self) -> tuple[int, int, int]:
        """Files changed, lines added, lines deleted."""
        return (len(self.files), sum(f.added or 0 for f in self.files), sum(f.deleted or 0 for f in self.files))

    def brief(self) -> str:
        """`3 files +12 -4`, for a table cell or a log line."""
        count, added, deleted = self.counts()
        return f"{count} file{'s' if count != 1 else ''} +{added} -{deleted}" if count else ""
