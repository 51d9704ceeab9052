"""The step graph: who waits for whom, cycle detection and topological levels.

A step depends on the steps named in its `depends_on`, on every step its templates or
expressions refer to (`{{ steps.X }}`, `when: steps.X...`), and under the `sequential`
pattern on the step before it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence


def dependencies(
    order: Sequence[str],
    explicit: Mapping[str, Iterable[str]],
    referenced: Mapping[str, Iterable[str]],
    pattern: str,
) -> dict[str, list[str]]:
    """Each step's upstream steps, in definition order, restricted to known ids."""
    known = set(order)
    deps: dict[str, list[str]] = {}
    for index, step in enumerate(order):
        upstream = set(explicit.get(step, ())) | set(referenced.get(step, ()))
        if pattern == "sequential" and index > 0:
            upstream.add(order[index - 1])
        upstream.discard(step)
        deps[step] = [s for s in order if s in upstream and s in known]
    return deps


def find_cycle(deps: Mapping[str, Sequence[str]]) -> list[str] | None:
    """A cycle as a list of ids whose first and last are the same, or None."""
    white, grey, black = 0, 1, 2
    colour = {node: white for node in deps}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = grey
        stack.append(node)
        for upstream in deps.get(node, ()):
            if colour.get(upstream) == grey:
                cycle = stack[stack.index(upstream):] + [upstream]
                return list(reversed(cycle))
            if colour.get(upstream) == white:
                found = visit(upstream)
                if found:
                    return found
        stack.pop()
        colour[node] = black
        return None

    for node in deps:
        if colour[node] == white:
            found = visit(node)
            if found:
                return found
    return None


def levels(deps: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """Steps grouped so that each group depends only on earlier groups (the graph is acyclic)."""
    depth: dict[str, int] = {}

    def level(node: str) -> int:
        if node not in depth:
            depth[node] = 1 + max((level(u) for u in deps[node]), default=-1)
        return depth[node]

    for node in deps:
        level(node)
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
