"""Sandboxed templates: rendering, strict undefined names, and blocked internals."""

from __future__ import annotations

import pytest

from agentflow.flows.language import templates
from agentflow.errors import TemplateError

pytestmark = pytest.mark.unit  # needs no Prefect server: `pytest -m unit`


def test_renders_pipeline_values():
    """Step outputs and inputs render into prompts."""
    context = {"inputs": {"feature": "VAT"}, "steps": {"a": {"summary": "ok", "data": {"n": 2}}}}
    assert templates.render("{{ inputs.feature }}: {{ steps.a.summary }} x{{ steps.a.data.n }}", context) == "VAT: ok x2"


def test_undefined_name_is_an_error():
    """A misspelt field is an error, never an empty string."""
    with pytest.raises(TemplateError, match="refers to something missing"):
        templates.render("{{ steps.a.summry }}", {"steps": {"a": {"summary": "ok"}}})


def test_sandbox_blocks_internals():
    """Python internals are not reachable from a template."""
    with pytest.raises(TemplateError):
        templates.render("{{ ''.__class__.__mro__[1].__subclasses__() }}", {})


def test_inspect_reports_names_and_keys():
    """Inspection finds top-level names and the keys used under them, ignoring loop variables."""
    info = templates.inspect("{% for x in steps.a.data.items() %}{{ x }}{% endfor %}{{ inputs.n }} {{ item }}")
    assert info.names == {"steps", "inputs", "item"}
    assert info.keys["steps"] == {"a"}
    assert info.keys["inputs"] == {"n"}


def test_syntax_error_names_the_template_line():
    """A template that does not compile says so, with its own line."""
    with pytest.raises(TemplateError, match="template line 2"):
        templates.inspect("ok\n{{ broken ")


def test_sole_expression_keeps_its_type():
    """`with:` values that are one expression pass mappings and numbers, not their text."""
    context = {"inputs": {"urls": {"bKash": "http://127.0.0.1/x"}, "n": 2}}
    value = templates.render_value({"urls": "{{ inputs.urls }}", "n": "{{ inputs.n + 1 }}", "s": "n={{ inputs.n }}"},
                                   context)
    assert value == {"urls": {"bKash": "http://127.0.0.1/x"}, "n": 3, "s": "n=2"}
    with pytest.raises(TemplateError, match="'dict object' has no attribute 'nope'"):
        templates.render_value("{{ inputs.nope }}", context)
