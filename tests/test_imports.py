"""Imports run one way, and no module is part of a circle (ARCHITECTURE.md).

Layers, lowest first: the root (errors, events, git, Prefect settings, the log) < the language
< tasks < durability < the engine < the CLI. A module may import its own layer and the
ones below it, never one above. The language imports nothing of Prefect either. Every
import counts, also one inside a function: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit  # needs no Prefect server: `pytest -m unit`

REPO = Path(__file__).resolve().parent.parent
# Where each part of the package lives (pyproject.toml's package-dir).
SOURCES = {"agentflow": REPO / "agentflow", "agentflow.flows": REPO / "flows", "agentflow.tasks": REPO / "tasks",
           "agentflow.blocks": REPO / "blocks", "agentflow.deployments": REPO / "deployments"}
LAYERS = [
    ("root", ["agentflow.errors", "agentflow.events", "agentflow.git", "agentflow._prefect_env", "agentflow.config",
              "agentflow.log",
              "agentflow.log_query", "agentflow.prefect_compat", "agentflow.printable", "agentflow.startup",
              "agentflow.tracing"]),
    ("language", ["agentflow.flows.language"]),
    ("tasks", ["agentflow.tasks", "agentflow.blocks"]),
    ("durability", ["agentflow.flows.durability"]),
    ("engine", ["agentflow.flows.engine"]),
    ("deployments", ["agentflow.deployments"]),
    ("observe", ["agentflow.flows.observe"]),
    ("cli", ["agentflow.flows.cli", "agentflow.__main__"]),
]


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in SOURCES.items():
        for path in folder.rglob("*.py"):
            if package == "agentflow" and path.parent != folder:
                continue  # agentflow/ holds the root modules only
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = path
    return found


MODULES = modules()


def imports_of(name: str, path: Path) -> set[str]:
    """The agentflow modules (or packages) `name` imports, anywhere in its body."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            submodules = {f"{base}.{alias.name}" for alias in node.names} & set(MODULES)
            found.update(submodules)
            if len(submodules) < len(node.names):  # names defined in `base` itself
                found.add(base)
    return {m for m in found if m == "agentflow" or m.startswith("agentflow.") or m.split(".")[0] == "prefect"}


GRAPH = {name: imports_of(name, path) for name, path in MODULES.items()}


def layer(module: str) -> int | None:
    for rank, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return rank
    return None


def test_every_module_has_a_layer():
    loose = [m for m in MODULES if layer(m) is None and m not in ("agentflow", "agentflow.flows",
                                                                   "agentflow.blocks", "agentflow.deployments")]
    assert loose == [], "put each new module in a layer of tests/test_imports.py (and ARCHITECTURE.md)"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module):
    own = layer(module)
    if own is None:
        return
    upward = sorted(target for target in GRAPH[module]
                    if target.startswith("agentflow") and (layer(target) or 0) > own)
    assert upward == [], f"{module} ({LAYERS[own][0]}) imports a higher layer: {upward}"


def test_the_language_does_not_import_prefect():
    offenders = {m: sorted(t for t in GRAPH[m] if t.split(".")[0] == "prefect")
                 for m in MODULES if layer(m) == 1}
    assert {m: t for m, t in offenders.items() if t} == {}


def test_no_module_imports_the_cli():
    users = sorted(m for m, targets in GRAPH.items() if LAYERS[layer(m) or 0][0] != "cli"
                   and any(t.startswith("agentflow.flows.cli") for t in targets))
    assert users == []


def test_no_circles():
    edges = {m: {t for t in targets if t in MODULES and t != m and not _is_empty_package(t)}
             for m, targets in GRAPH.items()}
    cycles = []
    state: dict[str, int] = {}
    for start in sorted(edges):
        if state.get(start):
            continue
        stack = [(start, iter(sorted(edges[start])))]
        path = [start]
        state[start] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                path.pop()
                state[node] = 2
            elif state.get(child) == 1:
                cycles.append(path[path.index(child):] + [child])
            elif not state.get(child):
                state[child] = 1
                path.append(child)
                stack.append((child, iter(sorted(edges[child]))))
    assert cycles == []


def _is_empty_package(module: str) -> bool:
    path = MODULES[module]
    return path.name == "__init__.py" and not GRAPH[module]


def test_the_checker_sees_a_forbidden_import(tmp_path):
    """The rules can fail: a module of the tasks layer importing the engine is caught."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from agentflow.flows.engine import scheduler\n")
    targets = imports_of("agentflow.tasks.bad", bad)
    assert "agentflow.flows.engine.scheduler" in targets
    assert layer("agentflow.flows.engine.scheduler") > layer("agentflow.tasks.bad")


def _third_party_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            roots.add(node.module.split(".")[0])
    return roots - {"agentflow", "__future__"}


def test_a_runs_watchdog_imports_no_heavy_library():
    """Each run starts a watchdog process (durability/watchdog.py): what it imports, every run
    pays for in CPU; pydantic alone cost it 0.3 s. It and what it imports (with their packages'
    __init__) stay on the standard library."""
    todo, seen = ["agentflow.flows.durability.watchdog"], set()
    while todo:
        module = todo.pop()
        parts = module.split(".")
        for name in [".".join(parts[:i]) for i in range(1, len(parts) + 1)]:
            if name in MODULES and name not in seen:
                seen.add(name)
                todo.extend(GRAPH[name])
    heavy = {m: sorted(_third_party_roots(MODULES[m]) & {"pydantic", "prefect", "httpx", "yaml", "typer", "rich"})
             for m in sorted(seen)}
    assert {m: roots for m, roots in heavy.items() if roots} == {}, sorted(seen)
