"""Malformed and hostile definitions: each is refused at load time with its line, quickly.

tests/hostile/ holds one file per case, each with the `# expect: LINE: text` lines that
`validate` must report (the same format as tests/bad/). Resource bombs are refused within
a second, never with a traceback or a hang.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from expect import expectations

from agentflow.errors import SpecError
from agentflow.flows.language.loader import load_text, load_workflow
from agentflow.flows.language.spec import RESULT_FIELDS

pytestmark = pytest.mark.unit  # needs no Prefect server: `pytest -m unit`

HOSTILE = Path(__file__).resolve().parents[1] / "hostile"
FILES = sorted(HOSTILE.glob("*.yaml"))


def test_the_corpus_is_large_and_every_file_says_what_it_expects():
    assert len(FILES) >= 60
    assert all(expectations(path) for path in FILES)


# Bounds against a runaway (an alias bomb, quadratic work), not timings: pytest-timeout stops
# a test that passes its deadline, which a slow or loaded machine does not come near.
@pytest.mark.timeout(60)
@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_refused_at_its_line_in_bounded_time(path: Path):
    with pytest.raises(SpecError) as caught:
        load_workflow(path)
    reported = [str(p) for p in caught.value.problems]
    for _, line, text in expectations(path):
        matches = [r for r in reported if text in r and (line is None or r.split(":")[1] == str(line))]
        assert matches, f"expected {path.name}:{line}: {text!r} in:\n" + "\n".join(reported)
    assert all(p.line for p in caught.value.problems), reported  # every problem has a line


@pytest.mark.timeout(120)  # quadratic work on 20 000 steps takes many minutes; linear, seconds
def test_a_20000_step_chain_listed_backwards_validates_in_bounded_time():
    chain = "".join(f"  - {{id: s{i}, depends_on: [s{i + 1}], run: [echo]}}\n" for i in range(19999))
    workflow = load_text(f"name: chain\npattern: dag\nsteps:\n{chain}  - {{id: s19999, run: [echo]}}\n")
    assert workflow.dependencies["s0"] == ("s1",)


@pytest.mark.timeout(120)  # quadratic work on 100 000 items would take hours
def test_a_100000_item_for_each_validates_in_bounded_time():
    items = "".join(f"      - item{i}\n" for i in range(100_000))
    workflow = load_text(f"name: wide\nsteps:\n  - id: s\n    for_each:\n{items}    run: [echo, '{{{{ item }}}}']\n")
    assert len(workflow.spec.steps[0].for_each) == 100_000


def test_result_fields_known_to_the_language_are_the_results():
    from agentflow.tasks.results import AgentResult

    assert set(RESULT_FIELDS) == set(AgentResult.model_fields)


def test_an_agent_that_is_not_valid_is_reported_once_at_its_definition():
    with pytest.raises(SpecError) as caught:
        load_workflow(HOSTILE / "g08-http-url-not-http.yaml")
    assert [(p.line, p.where) for p in caught.value.problems] == [(4, "agents.hook.url")]


def test_a_password_in_a_url_is_not_repeated_in_the_error():
    with pytest.raises(SpecError) as caught:
        load_workflow(HOSTILE / "g13-http-url-password.yaml")
    assert "cannot hold a password" in str(caught.value) and "hunter2" not in str(caught.value)


def test_a_sub_workflow_outside_the_repository_is_named_at_the_step_without_its_content():
    with pytest.raises(SpecError) as caught:
        load_workflow(HOSTILE / "i01-workflow-outside-the-repository.yaml")
    assert [(p.file, p.line) for p in caught.value.problems] == [(str(HOSTILE / "i01-workflow-outside-the-repository.yaml"), 5)]
    assert "root:" not in str(caught.value)  # /etc/passwd's first line, echoed before


def test_a_symlink_loop_is_a_located_error(tmp_path):
    (tmp_path / ".git").mkdir()
    (tmp_path / "loop.yaml").symlink_to(tmp_path / "loop.yaml")
    (tmp_path / "wf.yaml").write_text("name: wf\nsteps:\n  - id: call\n    workflow: loop.yaml\n")
    with pytest.raises(SpecError) as caught:
        load_workflow(tmp_path / "wf.yaml")
    assert [(p.line, p.what) for p in caught.value.problems] == [(4, "`loop.yaml` cannot be followed: a symlink loop")]


def test_a_definition_file_larger_than_the_bound_is_refused_unread(tmp_path):
    from agentflow.flows.language.loader import MAX_FILE_BYTES

    path = tmp_path / "huge.yaml"
    path.write_text("name: huge\nsteps: []\n" + "#" * MAX_FILE_BYTES)
    with pytest.raises(SpecError) as caught:
        load_workflow(path)
    assert f"workflow file is larger than {MAX_FILE_BYTES:,} bytes" in str(caught.value)
