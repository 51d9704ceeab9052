"""Loading definitions: the shipped workflows are valid; every bad file reports its problems."""

from __future__ import annotations

from pathlib import Path

import pytest
from expect import expectations

from agentflow.errors import SpecError
from agentflow.flows.language.loader import load_agents_file, load_text, load_workflow

pytestmark = pytest.mark.unit  # needs no Prefect server: `pytest -m unit`

REPO = Path(__file__).resolve().parents[2]
BAD = REPO / "tests" / "bad"
BAD_FILES = sorted(p for p in BAD.glob("[0-9]*.yaml"))
def test_there_are_many_distinct_bad_files():
    """Each error path of `validate` has its own bad file (at least 25)."""
    assert len(BAD_FILES) >= 25
    assert all(expectations(p) for p in BAD_FILES)


@pytest.mark.parametrize("path", BAD_FILES, ids=lambda p: p.stem)
def test_bad_file_reports_its_problem(path: Path):
    """The bad file's `# expect:` lines each match a reported problem, at that line."""
    with pytest.raises(SpecError) as caught:
        load_workflow(path)
    reported = [str(p) for p in caught.value.problems]
    for file, line, text in expectations(path):
        wanted_file = file or path.name
        matches = [r for r in reported if text in r and (Path(r.split(":")[0]).name == wanted_file)
                   and (line is None or r.split(":")[1] == str(line))]
        assert matches, f"expected {wanted_file}:{line}: {text!r} in:\n" + "\n".join(reported)


SHIPPED = sorted(p for p in (REPO / "workflows").glob("*.yaml")
                 if p.name != "agents.yaml" and not p.name.endswith(".test.yaml"))


def test_shipped_agents_file_is_valid():
    """workflows/agents.yaml loads on its own: the earlier engine's five agents and the
    test-writer as Claude Code subagents, each falling back to its offline stand-in."""
    agents = load_agents_file(REPO / "workflows" / "agents.yaml")
    five = {"business-logic-validator", "context-gathering", "code-reviewer", "api-integration-tester",
            "performance-profiler", "test-writer"}
    assert set(agents) == five | {f"{name}-local" for name in five}
    assert all(agents[name].kind == "claude-code" and agents[name].fallback == f"{name}-local" for name in five)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_workflows_are_valid(path: Path):
    """Every shipped workflow loads and carries the schema line for editors."""
    resolved = load_workflow(path)
    assert resolved.spec.steps
    assert path.read_text().startswith("# yaml-language-server: $schema=workflow.schema.json")


def test_all_problems_are_reported_at_once():
    """A file with several kinds of problems reports all of them, sorted by line."""
    text = """name: many
steps:
  - id: a
    run: [echo, "{{ inputs.nope }}"]
    retires: 2
  - id: b
    call: "probe:echo"
    when: "steps.zz.status == 'success'"
    timeout: soon
  - id: a
    run: [echo, again]
"""
    with pytest.raises(SpecError) as caught:
        load_text(text, source="many.yaml")
    lines = [p.line for p in caught.value.problems]
    assert lines == sorted(lines)
    text_of = "\n".join(str(p) for p in caught.value.problems)
    for fragment in ("many.yaml:4: steps[0].run[1]: refers to undeclared input `nope`",
                     "many.yaml:5: steps[0].retires: unknown key",
                     "many.yaml:8: steps[1].when: refers to unknown step `zz`",
                     "many.yaml:9: steps[1].timeout:",
                     "many.yaml:10: steps[2].id: duplicate step id `a`"):
        assert fragment in text_of


def test_spec_hash_ignores_comments_and_follows_content():
    """The version is the hash of the definition's content, not of its formatting."""
    base = "name: h\nsteps:\n  - {id: a, run: [echo, hi]}\n"
    same = "# a comment\nname: h\nsteps:\n  - id: a\n    run: [echo, hi]\n"
    other = "name: h\nsteps:\n  - {id: a, run: [echo, bye]}\n"
    assert load_text(base).spec_hash == load_text(same).spec_hash
    assert load_text(base).spec_hash != load_text(other).spec_hash


def test_missing_file_is_a_spec_error(tmp_path):
    """A path that does not exist is reported as such, not as a traceback."""
    with pytest.raises(SpecError, match="workflow file not found"):
        load_workflow(tmp_path / "nope.yaml")
