"""The step graph: implied order, references, cycles and levels."""

from __future__ import annotations

import pytest

from agentflow.flows.language import graph

pytestmark = pytest.mark.unit  # needs no Prefect server: `pytest -m unit`


def test_sequential_adds_previous_step():
    """Under `sequential` each step waits for the one before it."""
    deps = graph.dependencies(["a", "b", "c"], {}, {}, "sequential")
    assert deps == {"a": [], "b": ["a"], "c": ["b"]}


def test_parallel_uses_only_declared_and_referenced():
    """Under `parallel` only depends_on and references order the steps."""
    deps = graph.dependencies(["a", "b", "c"], {"c": ["a"]}, {"c": {"b"}}, "parallel")
    assert deps == {"a": [], "b": [], "c": ["a", "b"]}
    assert graph.levels(deps) == [["a", "b"], ["c"]]


def test_cycle_is_named():
    """A cycle is returned as the path that closes it."""
    cycle = graph.find_cycle({"a": ["c"], "b": ["a"], "c": ["b"]})
    assert cycle is not None and cycle[0] == cycle[-1] and set(cycle) == {"a", "b", "c"}
    assert graph.find_cycle({"a": [], "b": ["a"]}) is None


def test_downstream():
    """Downstream of a step is itself and everything that depends on it."""
    deps = {"a": [], "b": ["a"], "c": ["b"], "d": []}
    assert graph.downstream(deps, "b") == {"b", "c"}
