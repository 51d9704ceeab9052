"""The safe expression language: what it evaluates, what it refuses, and fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentflow.flows.language import expressions
from agentflow.errors import ExpressionError

pytestmark = pytest.mark.unit  # needs no Prefect server: `pytest -m unit`

CONTEXT = {
    "inputs": {"target": 300, "name": "VAT", "tags": ["a", "b"]},
    "steps": {"validate": {"status": "success", "summary": "ok", "data": {"count": 3, "items": [1, 2]}}},
    "result": {"metrics": {"p95_ms": 250.0}},
    "item": "bKash",
}


@pytest.mark.parametrize("text, expected", [
    ("steps.validate.status == 'success'", True),
    ("steps.validate.status == 'success' and steps.validate.data.count > 2", True),
    ("not steps.validate.data.count >= 5 or false", True),
    ("result.metrics.p95_ms < inputs.target", True),
    ("result.metrics.p95_ms < inputs.target * 0.5", False),
    ("'a' in inputs.tags", True),
    ("item not in ['Nagad', 'NBR']", True),
    ("len(steps.validate.data.items) == 2", True),
    ("steps['validate']['data']['items'][1]", 2),
    ("lower(inputs.name) == 'vat'", True),
    ("1 < steps.validate.data.count < 5", True),
    ("null == None", True),
    ("'yes' if inputs.target > 100 else 'no'", "yes"),
    ("inputs.name + '-2'", "VAT-2"),
])
def test_evaluates(text, expected):
    """Comparisons, boolean logic, membership, access and named functions evaluate as written."""
    assert expressions.evaluate(text, CONTEXT) == expected


@pytest.mark.parametrize("text, message", [
    ("__import__('os')", "only these functions can be called"),
    ("steps.validate.__class__", "names starting with `_`"),
    ("open('/etc/passwd')", "only these functions can be called"),
    ("(lambda: 1)()", "only these functions"),
    ("[x for x in inputs.tags]", "ListComp is not allowed"),
    ("inputs.name.upper()", "only these functions can be called"),
    ("2 ** 1000", "operator Pow is not allowed"),
    ("os.system", "unknown name `os`"),
    ("steps.validate.status ==", "does not parse"),
    ("inputs.tags[0:1]", "slices are not allowed"),
    ("x := 1", "does not parse"),
])
def test_refuses(text, message):
    """Anything outside the language is refused at parse time with a reason."""
    with pytest.raises(ExpressionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        expressions.parse(text)


@pytest.mark.parametrize("text, message", [
    ("steps.review.status == 'success'", "`steps` has no `review`; it has: validate"),
    ("steps.validate.data.items[5]", "out of range"),
    ("inputs.name * 1000000", "arithmetic needs numbers"),
    ("steps.validate.status.x", "it has no `x`"),
    ("len(1)", "cannot be evaluated"),
])
def test_runtime_errors_are_expression_errors(text, message):
    """A wrong reference or type at run time is an ExpressionError naming what is there."""
    with pytest.raises(ExpressionError, match=message.replace("(", r"\(").replace("[", r"\[")):
        expressions.evaluate(text, CONTEXT)


def test_references_finds_step_ids():
    """The step ids an expression uses are found for the dependency graph."""
    parsed = expressions.parse("steps.a.status == 'success' and steps['b'].data.x > 1 and inputs.n")
    assert parsed.references("steps") == {"a", "b"}
    assert parsed.references("inputs") == {"n"}


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=80))
def test_fuzz_arbitrary_text_never_escapes(text):
    """Any text either evaluates or raises ExpressionError; nothing else escapes."""
    try:
        parsed = expressions.parse(text)
    except ExpressionError:
        return
    try:
        parsed.evaluate(CONTEXT)
    except ExpressionError:
        pass


_atoms = st.sampled_from(["inputs", "steps", "result", "item", "1", "2.5", "'s'", "true", "null",
                          "steps.validate", "inputs.tags", "result.metrics", "__class__", "len", "open"])
_ops = st.sampled_from([" and ", " or ", " == ", " < ", " in ", " + ", " * ", " % ", ".", "[0]", "(", ")",
                        " not ", "[", "]", ",", " if ", " else ", "**", "lambda:"])


@settings(max_examples=600, deadline=None)
@given(st.lists(st.one_of(_atoms, _ops), min_size=1, max_size=12))
def test_fuzz_token_soup_never_escapes(tokens):
    """Expressions assembled from the language's own tokens never raise anything else."""
    text = "".join(tokens)
    try:
        parsed = expressions.parse(text)
        parsed.evaluate(CONTEXT)
    except ExpressionError:
        pass
