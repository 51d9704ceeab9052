"""Whatever a definition holds, loading it gives a workflow or a SpecError, never a traceback."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentflow.errors import SpecError
from agentflow.flows.language.loader import load_text

pytestmark = pytest.mark.unit  # needs no Prefect server: `pytest -m unit`

_KEYS = ["name", "steps", "id", "run", "call", "agent", "prompt", "when", "for_each", "repeat", "until", "max",
         "depends_on", "retries", "timeout", "inputs", "type", "default", "pattern", "agents", "kind", "command",
         "with", "assert", "cache", "ttl", "gate", "files", "max_parallel", "criticality", "defaults"]
_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-5, 100), st.sampled_from(
    ["a", "b", "x y", "{{ steps.a.summary }}", "{{ inputs.x }}", "{{ item }}", "steps.a.status == 'ok'",
     "sequential", "dag", "parallel", "10m", "shell", "python", "probe:echo", "{%", "__class__", "-1", ""]))
_VALUES = st.recursive(_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(_KEYS), inner, max_size=5)), max_leaves=25)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(_KEYS), _VALUES, max_size=6))
def test_random_definitions_never_escape(document):
    """Random structures built from the language's own keys load or raise SpecError only."""
    text = yaml.safe_dump(document)
    try:
        load_text(text, source="fuzz.yaml")
    except SpecError as exc:
        assert exc.problems and all(str(p).startswith("fuzz.yaml") for p in exc.problems)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_random_text_never_escapes(text):
    """Arbitrary text loads or raises SpecError only."""
    try:
        load_text(text, source="fuzz.yaml")
    except SpecError:
        pass
