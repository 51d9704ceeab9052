"""Budgets per run and per step, on the spend the agents report (an llm agent on a stub)."""

from __future__ import annotations

import json

import pytest
from model_stubs import AnthropicStub

from agentflow import run_workflow
from agentflow.errors import WorkflowFailed


@pytest.fixture
def model(monkeypatch):
    """A model whose every answer reports 10 input and 5 output tokens."""
    stub = AnthropicStub([{"text": "ok", "usage": {"input_tokens": 10, "output_tokens": 5}}])
    stub.start()
    monkeypatch.setenv("ANTHROPIC_API_KEY", "dummy")
    yield stub
    stub.stop()


def _agents(stub) -> str:
    # not cached: a cache hit spends nothing (and a stub's port may repeat between tests)
    return (f'defaults: {{cache: false}}\nagents:\n  m: {{kind: llm, model: "anthropic:claude-sonnet-4-6", '
            f'base_url: "{stub.url}", circuit_breaker: false}}\n')


def test_a_run_over_its_budget_starts_nothing_more(model, tmp_path):
    path = tmp_path / "wf.yaml"
    path.write_text("name: budgeted\nbudget: {tokens: 20}\n" + _agents(model) + """steps:
  - {id: one, agent: m, prompt: first}
  - {id: two, agent: m, prompt: second}
  - {id: three, agent: m, prompt: third}
  - {id: four, call: "probe:echo", prompt: after}
""")
    with pytest.raises(WorkflowFailed) as failure:
        run_workflow(str(path))
    result = failure.value.result
    assert [result.steps[s].status for s in ("one", "two", "three", "four")] == ["success", "success", "failed",
                                                                                  "not_run"]
    assert result.steps["three"].summary == "step `three`: not started: the run spent 30 tokens of its 20 budget"
    assert result.spend == {"usd": pytest.approx(result.spend["usd"]), "tokens": 30}
    assert "the run spent 30 tokens of its 20 budget" in str(failure.value)
    assert len(model.model_requests) == 2


def test_a_step_over_its_budget_refuses_its_remaining_items(model, tmp_path):
    path = tmp_path / "wf.yaml"
    path.write_text("name: step-budget\n" + _agents(model) + """steps:
  - {id: each, agent: m, prompt: "item {{ item }}", for_each: [1, 2, 3], max_parallel: 1, budget: {tokens: 16}}
""")
    with pytest.raises(WorkflowFailed) as failure:
        run_workflow(str(path))
    step = failure.value.result.steps["each"]
    assert step.summary.startswith("2/3 items succeeded; first failure: step `each`: not started: the step spent 30")
    assert len(model.model_requests) == 2


def test_the_cli_shows_the_spend(cli, model, tmp_path):
    path = tmp_path / "wf.yaml"
    path.write_text("name: spend\n" + _agents(model) + "steps:\n  - {id: one, agent: m, prompt: hi}\n")
    done = cli("run", str(path), "--json", cwd=tmp_path, env={"ANTHROPIC_API_KEY": "dummy"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["spend"]["tokens"] == 15
    assert "agents spent $" in done.stderr and "and 15 tokens" in done.stderr


def test_a_resumed_run_counts_what_it_spent_before(cli, model, tmp_path):
    """The spend of the steps a resumed run takes from its journal counts against its budget:
    `four` is refused because `one` (first attempt) and `three` (the resume) spent 30 tokens."""
    (tmp_path / "wf.yaml").write_text("name: resumed-budget\nbudget: {tokens: 20}\n" + _agents(model) + """steps:
  - {id: one, agent: m, prompt: first}
  - {id: two, run: [sh, -c, "test -e fixed"], depends_on: [one]}
  - {id: three, agent: m, prompt: third, depends_on: [two]}
  - {id: four, agent: m, prompt: fourth, depends_on: [three]}
""")
    env = {"ANTHROPIC_API_KEY": "dummy"}
    first = cli("run", "wf.yaml", "--json", cwd=tmp_path, env=env)
    assert first.returncode == 1, first.stdout + first.stderr
    run_id = json.loads(first.stdout)["run_id"]
    (tmp_path / "fixed").touch()
    resumed = cli("resume", run_id, "--json", cwd=tmp_path, env=env)
    assert resumed.returncode == 1, resumed.stdout + resumed.stderr
    document = json.loads(resumed.stdout)
    assert document["steps"]["one"]["reused"] is True
    assert document["steps"]["four"]["summary"] == "step `four`: not started: the run spent 30 tokens of its 20 budget"
    assert document["spend"]["tokens"] == 30
    assert len(model.model_requests) == 2  # one (first attempt) and three (the resume)
