"""Claude Code subagents: `.claude/agents/NAME.md` files of the repository.

A subagent file is YAML frontmatter (`name`, `description`, `tools`, `model`) between `---`
lines, then the subagent's prompt. Read here so that a `claude-code` agent with
`subagent: NAME` (or a step naming the subagent as its agent) runs as that subagent, and
so that the file's content is part of the step's cache key: editing the prompt is a miss.
"""

from __future__ import annotations

from pathlib import Path

from agentflow.flows.language import document
from agentflow.flows.language.spec import Subagent

MAX_BYTES = 256 * 1024
FOLDER = Path(".claude") / "agents"


class SubagentError(ValueError):
    """A subagent file that cannot be read as one."""


def find(name: str, starts: list[Path]) -> Path | None:
    """`.claude/agents/NAME.md` in the first of `starts` (or a parent of one) that has it."""
    seen: set[Path] = set()
    for start in starts:
        for folder in [start, *start.parents]:
            if folder in seen:
                continue
            seen.add(folder)
            candidate = folder / FOLDER / f"{name}.md"
            if candidate.is_file():
                return candidate
    return None


def places(starts: list[Path]) -> str:
    """Where `find` looks, for an error message."""
    return ", ".join(str(start / FOLDER) for start in dict.fromkeys(starts)) + " (and their parents)"


def read(name: str, path: Path) -> Subagent:
    """Parse a subagent file; SubagentError says what is wrong with it."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise SubagentError(f"cannot read {path}: {exc.strerror}") from None
    if len(raw) > MAX_BYTES:
        raise SubagentError(f"{path} is larger than {MAX_BYTES // 1024} KiB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SubagentError(f"{path} is not UTF-8 text") from None
    return parse(name, str(path), text)


def parse(name: str, path: str, text: str) -> Subagent:
    front: dict = {}
    body = text
    lines = text.splitlines(keepends=True)
    if lines and lines[0].strip() == "---":
        end = next((i for i, line in enumerate(lines[1:], 1) if line.strip() == "---"), None)
        if end is None:
            raise SubagentError(f"{path}: the frontmatter opened by `---` on line 1 is never closed")
        try:  # the one bounded loader: an alias bomb here is refused as in a workflow
            loaded = document.parse("".join(lines[1:end])).data
        except document.YamlSyntaxError as exc:
            where = f"{path}:{exc.line + 1}" if exc.line else path  # + the `---` line
            raise SubagentError(f"{where}: the frontmatter is not valid YAML ({exc})") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise SubagentError(f"{path}: the frontmatter must be a mapping (name:, description:, tools:)")
        front = loaded or {}
        body = "".join(lines[end + 1:])
    tools = front.get("tools") or []
    if isinstance(tools, str):
        tools = [t.strip() for t in tools.split(",") if t.strip()]
    if not isinstance(tools, list) or not all(isinstance(t, str) for t in tools):
        raise SubagentError(f"{path}: `tools` is a list of tool names or a comma-separated string")
    model = front.get("model")
    if model is not None and not isinstance(model, str):
        raise SubagentError(f"{path}: `model` is a model's name (a string) or `inherit`, not {model!r:.40}")
    declared = front.get("name")
    if declared is not None and str(declared) != name:
        raise SubagentError(f"{path}: its frontmatter says `name: {str(declared):.60}`, but the file is "
                            f"{name}.md; Claude Code finds a subagent by its name: make them the same")
    return Subagent(name=str(front.get("name") or name), path=path, description=str(front.get("description") or ""),
                    tools=tools, model=str(model) if model and model != "inherit" else None,
                    prompt=body.strip())
