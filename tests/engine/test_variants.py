"""A/B variants of an agent (engine/variants.py): picked from the run and the step, in proportion
to the weights; each variant configures the call and keys it apart; bad variants are refused."""

from __future__ import annotations

import uuid

import pytest

from agentflow.errors import SpecError
from agentflow.flows.engine import requests, variants
from agentflow.flows.engine.compile import compile_workflow
from agentflow.flows.language.loader import load_text

pytestmark = pytest.mark.unit  # needs no Prefect server: `pytest -m unit`

WORKFLOW = """
name: ab
agents:
  writer:
    kind: shell
    command: [echo, plain]
    variants:
      - {name: a, weight: 3}
      - {name: b, command: [echo, other]}
steps:
  - {id: write, agent: writer, prompt: "write it", cache: true}
  - {id: again, agent: writer, prompt: "write it", cache: true}
"""


def _plans():
    return compile_workflow(load_text(WORKFLOW, source="ab.yaml")).plans


def _run_picking(plan, name: str) -> str:
    """A run id whose pick for this step is `name` (found, as any run's would be, by the rule)."""
    return next(run for run in (str(uuid.uuid4()) for _ in range(1000))
                if requests.step_variant(plan, run) == name)


def test_the_pick_follows_the_weights_and_holds_for_a_run_and_step():
    """3:1 weights give ~75% a over 4000 runs; the same run and step always get the same variant."""
    plan = _plans()["write"]
    runs = [str(uuid.uuid4()) for _ in range(4000)]
    picked = [variants.pick(plan.variants, run, "write").name for run in runs]
    assert 0.72 < picked.count("a") / len(picked) < 0.78
    assert picked == [variants.pick(plan.variants, run, "write").name for run in runs]
    # Steps pick independently: over many runs, two steps of one run do not always agree.
    other = [variants.pick(plan.variants, run, "again").name for run in runs]
    assert 0.2 < sum(x != y for x, y in zip(picked, other)) / len(runs) < 0.5


def test_a_variant_configures_the_call_and_keys_it_apart():
    """Variant b's command is what its calls run; its calls' keys differ from a's, a's are stable."""
    plan = _plans()["write"]
    run_a, run_b = _run_picking(plan, "a"), _run_picking(plan, "b")
    a = requests.build("ab", plan, {"inputs": {}, "steps": {}}, run_id=run_a)
    b = requests.build("ab", plan, {"inputs": {}, "steps": {}}, run_id=run_b)
    assert (a.variant, a.argv) == ("a", ["echo", "plain"])
    assert (b.variant, b.argv) == ("b", ["echo", "other"])
    key_a, key_b = requests.call_key("ab", plan, a), requests.call_key("ab", plan, b)
    assert key_a.agent != key_b.agent and key_a.request != key_b.request
    again = requests.build("ab", plan, {"inputs": {}, "steps": {}}, run_id=_run_picking(plan, "a"))
    assert requests.call_key("ab", plan, again) == key_a  # another run on variant a: a's cached answers


@pytest.mark.parametrize("variants_yaml, said", [
    ("[{name: a}]", "two or more configurations"),
    ("[{name: a}, {name: a, model: x}]", "variant names must differ: a is used twice"),
    ("[{name: a}, {name: b, temperature: 5}]", "variant `b` makes an agent that is not valid: temperature"),
    ("[{name: a}, {name: b, kind: python}]", "kind"),
    ("[{name: a}, {name: b, weight: 0}]", "weight"),
])
def test_bad_variants_are_refused_with_file_and_line(variants_yaml, said):
    """A variant that is alone, named twice, invalid as an agent, or changes the kind: file:line and why."""
    text = f"""name: ab
agents:
  writer:
    kind: llm
    model: anthropic:claude-sonnet-4-6
    variants: {variants_yaml}
steps:
  - {{id: write, agent: writer, prompt: hi}}
"""
    with pytest.raises(SpecError) as raised:
        load_text(text, source="ab.yaml")
    message = str(raised.value)
    assert "ab.yaml:" in message and said in message, message
