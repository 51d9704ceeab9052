"""Parsing agent output into AgentResult the way the earlier engine did."""

from __future__ import annotations

import pytest

from agentflow.tasks.results import AgentResult, from_value, parse_text

pytestmark = pytest.mark.unit  # needs no Prefect server: `pytest -m unit`

TEXT = """Some preamble line

## Summary
Bangladesh VAT & Tax Compliance Validation Complete
More detail here.

Created: services/finance/test-validation.ts
Modified: `services/finance/vat.ts`

## Metrics
- toolCalls: 5
- filesRead: 12
- p95 ms: 241.5
- verdict: pass
"""


def test_parses_summary_artifacts_and_metrics():
    """`## Summary`, Created:/Modified: lines and `## Metrics` become fields."""
    result = parse_text(TEXT)
    assert result.summary == "Bangladesh VAT & Tax Compliance Validation Complete"
    assert [(a.path, a.action) for a in result.artifacts] == [
        ("services/finance/test-validation.ts", "created"), ("services/finance/vat.ts", "modified")]
    assert result.metrics == {"toolcalls": 5, "filesread": 12, "p95_ms": 241.5, "verdict": "pass"}


def test_first_line_when_no_summary_section():
    """Without a summary section, the first non-empty line is the summary."""
    assert parse_text("\n  first line\nsecond").summary == "first line"


def test_json_output_becomes_data():
    """JSON output is kept as data, and its summary field is used."""
    result = parse_text('{"summary": "3 issues", "issues": [1, 2, 3]}')
    assert result.data["issues"] == [1, 2, 3]
    assert result.summary == "3 issues"


def test_values_from_callables():
    """Dicts of result fields are results; other values become data."""
    assert from_value({"status": "skipped", "summary": "nothing"}).status == "skipped"
    assert from_value({"count": 3}).data == {"count": 3}
    assert from_value([1, 2]).summary == "2 items"
    assert isinstance(from_value(None), AgentResult)


@pytest.mark.parametrize("text, confidence", [
    ("## Summary\nok\nConfidence: 0.87", 0.87),
    ("done\n**Confidence**: 92%", 0.92),
    ('{"summary": "s", "confidence": 0.4}', 0.4),
    ("## Summary\nok\n## Metrics\n- confidence: 0.3", 0.3),
    ("no word of it", None),
    ("Confidence: 250%", None),
])
def test_the_agents_confidence_is_read_from_its_answer(text, confidence):
    """A JSON field, a `Confidence:` line (0..1 or a percentage) or a metric; out of 0..1: none."""
    assert parse_text(text).confidence == confidence
