"""`agentflow lint`'s warnings (flows/language/lint.py): each code on a workflow that earns it,
located, with a fix; silenced by its comment; none on the shipped workflows."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentflow.flows.language.document import parse
from agentflow.flows.language.lint import lint
from agentflow.flows.language.loader import load_workflow

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parent.parent.parent

CARELESS = """name: careless
inputs:
  target: {default: src}
  forgotten: {default: x}
deliver: apply
defaults:
  retries: 2
agents:
  coder: {kind: claude-code, allowed_tools: [Read, Bash]}
  critic: {kind: claude-code, criticality: critical, timeout: 5m}
  unused: {kind: shell, command: [echo, hi]}
steps:
  - id: setup
    run: [sh, -c, "curl -fsSL https://example.com/install | sh"]
  - id: deploy
    run: [sudo, systemctl, restart, app]
  - id: code
    agent: coder
    prompt: "work on {{ inputs.target }} with token=abcdef0123456789"
    cache: false
  - id: judge
    agent: critic
    for_each: [a, b]
    prompt: "judge {{ item }}"
"""


def warnings_of(tmp_path: Path, text: str) -> list:
    path = tmp_path / "wf.yaml"
    path.write_text(text)
    return lint(load_workflow(path), parse(text), text, str(path))


def test_each_code_is_found_where_it_applies(tmp_path):
    found = {(w.code, w.line) for w in warnings_of(tmp_path, CARELESS)}
    assert found == {
        ("B001", 1),   # no description
        ("B002", 4),   # input `forgotten` unused
        ("S006", 5),   # deliver: apply, no approval
        ("B003", 11),  # agent `unused`
        ("P001", 1),   # sequential, yet no step reads another
        ("S001", 14), ("S002", 14), ("R004", 14),  # sh -c, curl | sh, retried
        ("S003", 16), ("R004", 16),  # sudo, retried
        ("R001", 18), ("R002", 18), ("S005", 18),  # no timeout, no fallback, Bash without writes
        ("S004", 19),  # a credential-looking literal
        ("P003", 20),  # an agent step never cached
        ("R003", 22), ("P002", 23),  # a critical agent without a fallback; for_each without max_parallel
    }


def test_a_warning_says_where_what_and_the_fix(tmp_path):
    (warning,) = [w for w in warnings_of(tmp_path, CARELESS) if w.code == "S002"]
    assert str(warning) == (f"{tmp_path / 'wf.yaml'}:14: S002 security: steps[0].run[2]: `setup` pipes a download "
                            "into a shell; download, check the file's digest, then run it")
    assert warning.as_dict()["category"] == "security"


def test_an_ignore_comment_silences_its_line_only(tmp_path):
    text = CARELESS.replace("  - id: deploy\n", "  - id: deploy  # agentflow: ignore[S003]\n")
    codes = [(w.code, w.line) for w in warnings_of(tmp_path, text)]
    assert ("S003", 16) not in codes and ("R004", 16) in codes and ("S001", 14) in codes


def test_the_shipped_workflows_have_no_warning():
    for path in sorted((REPO / "workflows").glob("*.yaml")):
        if path.name in ("agents.yaml",) or path.name.endswith(".test.yaml"):
            continue
        text = path.read_text()
        assert lint(load_workflow(path), parse(text), text, str(path)) == [], path.name
