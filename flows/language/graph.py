"""The step graph: who waits for whom, cycle detection and topological levels.

A step depends on the steps named in its `depends_on`, on every step its templates or
expressions refer to (`{{ steps.X }}`, `when: steps.X...`), and under the `sequential`
pattern on the step before it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def dependencies(
    order: Sequence[str],
    explicit: Mapping[str, Iterable[str]],
    referenced: Mapping[str, Iterable[str]],
    pattern: str,
) -> dict[str, list[str]]:
    """Each step's upstream steps, in definition order, restricted to known ids."""
    # Each step's upstream ordered by position: sorting its few ids, not scanning every step
    # (which made a 20 000-step definition take seconds to load).
    position = {step: index for index, step in enumerate(order)}
    deps: dict[str, list[str]] = {}
    for index, step in enumerate(order):
        upstream = set(explicit.get(step, ())) | set(referenced.get(step, ()))
        if pattern == "sequential" and index > 0:
            upstream.add(order[index - 1])
        upstream.discard(step)
        deps[step] = sorted((s for s in upstream if s in position), key=position.__getitem__)
    return deps


def find_cycle(deps: Mapping[str, Sequence[str]]) -> list[str] | None:
    """A cycle as a list of ids, each depending on the next, whose first and last are the
    same; or None. Iterative: a chain of thousands of steps is no deeper than one."""
    white, grey, black = 0, 1, 2
    colour = {node: white for node in deps}
    for start in deps:
        if colour[start] != white:
            continue
        colour[start] = grey
        path = [start]
        pending = [iter(deps.get(start, ()))]
        while pending:
            upstream = next(pending[-1], None)
            if upstream is None:
                colour[path.pop()] = black
                pending.pop()
            elif colour.get(upstream) == grey:
                return path[path.index(upstream):] + [upstream]
            elif colour.get(upstream) == white:
                colour[upstream] = grey
                path.append(upstream)
                pending.append(iter(deps.get(upstream, ())))
    return None


def levels(deps: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """Steps grouped so that each group depends only on earlier groups (the graph is acyclic)."""
    depth: dict[str, int] = {}
    for start in deps:
        stack = [start]
        while stack:
            node = stack[-1]
            if node in depth:
                stack.pop()
                continue
            waiting = [up for up in deps[node] if up not in depth]
            if waiting:
                stack.extend(waiting)
                continue
            depth[node] = 1 + max((depth[up] for up in deps[node]), default=-1)
            stack.pop()
    grouped: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for node in deps:
        grouped[depth[node]].append(node)
    return grouped


def downstream(deps: Mapping[str, Sequence[str]], start: str) -> set[str]:
    """`start` and every step that depends on it, directly or not."""
    children: dict[str, set[str]] = {n: set() for n in deps}
    for node, ups in deps.items():
        for up in ups:
            children[up].add(node)
    seen, todo = {start}, [start]
    while todo:
        for child in children[todo.pop()]:
            if child not in seen:
                seen.add(child)
                todo.append(child)
    return seen


def render_text(deps: Mapping[str, Sequence[str]], labels: Mapping[str, str]) -> str:
    lines = []
    for number, group in enumerate(levels(deps), start=1):
        lines.append(f"level {number}" + (" (in parallel)" if len(group) > 1 else ""))
        for node in group:
            after = f"  after {', '.join(deps[node])}" if deps[node] else ""
            lines.append(f"  {node}  [{labels.get(node, '')}]{after}")
    return "\n".join(lines)


def render_mermaid(deps: Mapping[str, Sequence[str]], labels: Mapping[str, str]) -> str:
    lines = ["flowchart TD"]
    for node in deps:
        lines.append(f'    {node}["{node}<br/>{labels.get(node, "")}"]')
    for node, ups in deps.items():
        for up in ups:
            lines.append(f"    {up} --> {node}")
    return "\n".join(lines)


def concurrent(steps: Sequence[Any], deps: Mapping[str, Sequence[str]], max_parallel: int) -> set[str]:
    """Steps that may run at the same time as another: neither depends on the other, however
    indirectly; and `for_each` steps whose items may run side by side."""
    if max_parallel == 1:
        return set()
    found = {s.id for s in steps if s.for_each is not None and (s.max_parallel or 2) > 1}
    ordered = levels(deps)
    if all(len(level) == 1 for level in ordered):
        return found  # a chain (every `sequential` workflow): each step waits for the one before
    ancestors: dict[str, set[str]] = {}
    for level in ordered:  # upstream steps first
        for step_id in level:
            mine: set[str] = set()
            for up in deps.get(step_id, ()):
                mine |= {up} | ancestors.get(up, set())
            ancestors[step_id] = mine
    for level in ordered:
        if len(level) > 1:  # steps of one level never depend on each other
            found.update(level)
    ids = [s.id for s in steps]
    for a in ids:
        if a not in found and any(b != a and b not in ancestors.get(a, ()) and a not in ancestors.get(b, ())
                                  for b in ids):
            found.add(a)
    return found


def writers_side_by_side(steps: Sequence[Any], deps: Mapping[str, Sequence[str]], max_parallel: int) -> list[str]:
    """Steps that may change files and may run at the same time as another: in one shared tree
    (`workspace: in-place`) their changes could not be told apart."""
    together = concurrent(steps, deps, max_parallel)
    return [s.id for s in steps if s.id in together and s.kind not in ("approval", "assert", "deployment")]
