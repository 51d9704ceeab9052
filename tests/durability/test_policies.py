"""The cache key parts, each alone, and composed as a step's policy."""

from __future__ import annotations

import pytest
from prefect.cache_policies import CompoundCachePolicy
from prefect.utilities.annotations import quote

from agentflow.flows.durability.cache import (AgentConfig, Commit, Files, Inputs, MissingKeyPart, StepDefinition,
                                              components, explain_miss, key_of, parts_of, step_policy)
from agentflow.tasks.request import AgentRequest, CallKey

pytestmark = pytest.mark.unit  # needs no Prefect server: `pytest -m unit`

KEY = CallKey(workflow="wf", step="s-digest", agent="a-digest", request="r-digest",
              repo={"commit": "abc123", "dirty": None}, files={"src/a.py": "f1"})


def request(**changes) -> AgentRequest:
    key = KEY.model_copy(update=changes.pop("key", {}))
    fields = {"prompt": "p", **changes}
    return AgentRequest(workflow="wf", step="s", label="s", kind="python", callable="m:f", key=key, **fields)


def compute(policy, req) -> str | None:
    return policy.compute_key(task_ctx=None, inputs={"request": quote(req)}, flow_parameters={})


@pytest.mark.parametrize("part, field, other", [
    (StepDefinition(), "step", "s2"),
    (StepDefinition(), "workflow", "wf2"),
    (Inputs(), "request", "r2"),
    (AgentConfig(), "agent", "a2"),
    (Commit(), "repo", {"commit": "def456", "dirty": None}),
    (Commit(), "repo", {"commit": "abc123", "dirty": "d1"}),
    (Files(), "files", {"src/a.py": "f2"}),
])
def test_each_part_changes_with_its_own_field(part, field, other):
    base = compute(part, request())
    assert base is not None
    assert compute(part, request(key={field: other})) != base


@pytest.mark.parametrize("part, unrelated", [
    (Inputs(), {"agent": "a2", "repo": {"commit": "x"}, "files": {}}),
    (AgentConfig(), {"request": "r2", "step": "s2"}),
    (Commit(), {"request": "r2", "files": {}}),
    (Files(), {"repo": {"commit": "x"}, "agent": None}),
])
def test_each_part_ignores_the_others(part, unrelated):
    assert compute(part, request(key=unrelated)) == compute(part, request())


def test_no_call_key_no_cache():
    plain = AgentRequest(workflow="wf", step="s", label="s (skipped)", kind="skip")
    assert compute(step_policy(), plain) is None


def test_a_part_the_call_does_not_carry_raises():
    with pytest.raises(MissingKeyPart, match="repository state was not read"):
        compute(Commit(), request(key={"repo": None}))
    with pytest.raises(MissingKeyPart, match="files were not hashed"):
        compute(Files(), request(key={"files": None}))


def test_step_policy_composes_the_chosen_parts_with_plus():
    full = step_policy()
    assert isinstance(full, CompoundCachePolicy)
    assert [p.name for p in parts_of(full)] == ["step", "inputs", "files", "commit", "agent"]
    no_commit = step_policy(("inputs", "files"))
    assert [p.name for p in parts_of(no_commit)] == ["step", "inputs", "files"]
    # the commit is out of that key: moving it does not change the key
    moved = request(key={"repo": {"commit": "def456", "dirty": None}})
    assert key_of(no_commit, moved) == key_of(no_commit, request())
    assert key_of(full, moved) != key_of(full, request())
    assert key_of(full, request()) == compute(full, request())  # what Prefect computes


def test_a_miss_is_explained_by_the_parts_that_changed():
    policy = step_policy()
    before = components(policy, request())
    after = components(policy, request(prompt="other", key={"repo": {"commit": "def456", "dirty": None},
                                                            "files": {"src/a.py": "f2", "src/b.py": "f3"}}))
    assert explain_miss(policy, before, after) == ["commit abc123 -> def456", "files changed: src/a.py, src/b.py",
                                                   "rendered prompt changed"]
    assert explain_miss(policy, before, before) == []
