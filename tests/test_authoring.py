"""Authoring: `run --record` / `--replay` and `agentflow test`, through the real command on the
session's server, in a real git repository. A replayed or tested run calls no agent: the
agents here refuse to run when AGENTFLOW_TEST_NO_AGENTS is set, and count their calls."""

from __future__ import annotations

import json
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

HELPERS = '''
import os
from pathlib import Path

def _called(name):
    if os.environ.get("AGENTFLOW_TEST_NO_AGENTS"):
        raise RuntimeError(f"the real agent {name} was called")
    with open(os.environ["CALLS_LOG"], "a") as log:
        log.write(name + "\\n")

def write(prompt="", **kw):
    _called("writer")
    Path("notes.txt").write_text("notes on " + prompt + "\\n")
    return {"summary": "wrote notes.txt", "data": {"pages": 3}}

def review(prompt="", **kw):
    _called("reviewer")
    return "## Summary\\nreviewed: " + prompt + "\\n"

def spare(prompt="", **kw):
    _called("spare")
    return {"summary": "the spare answered", "data": {"pages": 1}}
'''

WORKFLOW = """
name: authoring
inputs:
  topic: {default: cats}
agents:
  writer: {kind: python, callable: "helpers:write", fallback: spare}
  spare: {kind: python, callable: "helpers:spare"}
  reviewer: {kind: python, callable: "helpers:review"}
steps:
  - {id: write, agent: writer, prompt: "{{ inputs.topic }}"}
  - {id: review, agent: reviewer, prompt: "{{ steps.write.summary }}", depends_on: [write]}
  - {id: count, run: [sh, -c, 'wc -l < notes.txt'], depends_on: [review]}
"""


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                          capture_output=True, text=True).stdout


@pytest.fixture
def project(tmp_path):
    repo = tmp_path / "project"
    repo.mkdir()
    (repo / "helpers.py").write_text(HELPERS)
    (repo / "wf.yaml").write_text(WORKFLOW)
    (repo / ".gitignore").write_text("*.rec.yaml\n*.xml\n__pycache__/\n")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "init")
    return repo


@pytest.fixture
def offline(project, tmp_path):
    """The environment of a run whose agents must not be called."""
    return {"AGENTFLOW_TEST_NO_AGENTS": "1", "PREFECT_HOME": str(tmp_path / "home")}


def test_a_recorded_run_replays_without_its_agents_and_brings_back_their_work(cli, project, offline, tmp_path):
    calls = tmp_path / "calls.log"
    recorded = cli("run", "wf.yaml", "--record", "run.rec.yaml", "--json", cwd=project,
                   env={"CALLS_LOG": str(calls), "PREFECT_HOME": str(tmp_path / "home")})
    assert recorded.returncode == 0, recorded.stderr
    assert "recorded 2 agent calls in run.rec.yaml" in recorded.stderr
    assert calls.read_text() == "writer\nreviewer\n"
    recording = yaml.safe_load((project / "run.rec.yaml").read_text())
    assert [(c["step"], c["agent"], c["request"]["prompt"]) for c in recording["calls"]] == [
        ("write", "writer", "cats"), ("review", "reviewer", "wrote notes.txt")]
    assert "+notes on cats" in recording["calls"][0]["answer"]["patch"]

    replayed = cli("run", "wf.yaml", "--replay", "run.rec.yaml", "--json", cwd=project, env=offline)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    document = json.loads(replayed.stdout)
    assert calls.read_text() == "writer\nreviewer\n"  # no agent was called
    assert document["steps"]["write"]["result"]["data"] == {"pages": 3}
    assert document["steps"]["review"]["summary"] == "reviewed: wrote notes.txt"
    assert document["steps"]["count"]["summary"] == "1"  # the command ran for real, on the replayed work
    assert git(project, "show", f"{document['work']['branch']}:notes.txt") == "notes on cats\n"


def test_a_call_the_recording_does_not_hold_fails_saying_what_differs(cli, project, offline, tmp_path):
    done = cli("run", "wf.yaml", "--record", "run.rec.yaml", cwd=project,
               env={"CALLS_LOG": str(tmp_path / "calls.log"), "PREFECT_HOME": str(tmp_path / "home")})
    assert done.returncode == 0, done.stderr
    other = cli("run", "wf.yaml", "--replay", "run.rec.yaml", "-i", "topic=dogs", "--json", cwd=project, env=offline)
    assert other.returncode == 1
    summary = json.loads(other.stdout)["steps"]["write"]["summary"]
    # the writer, then its fallback: neither is in the recording
    assert ("`writer`: step call `write`: agent writer's call is not in run.rec.yaml: the nearest recorded call "
            "(write) differs in prompt from character 0: recorded 'cats', now 'dogs'") in summary
    assert "agent spare's call is not in run.rec.yaml: it holds no call of agent spare in step `write`" in summary
    assert "the real agent" not in other.stdout + other.stderr


def test_record_and_replay_refuse_what_cannot_work(cli, project, offline):
    both = cli("run", "wf.yaml", "--record", "a.yaml", "--replay", "b.yaml", cwd=project, env=offline)
    assert both.returncode == 2 and "--record and --replay contradict each other" in both.stderr
    (project / "other.rec.yaml").write_text("workflow: elsewhere\ncalls: []\n")
    other = cli("run", "wf.yaml", "--replay", "other.rec.yaml", cwd=project, env=offline)
    assert other.returncode == 2 and "records a run of workflow 'elsewhere', not 'authoring'" in other.stderr
    (project / "bad.rec.yaml").write_text("workflow: authoring\ncalls:\n  - step: write\n    agnet: writer\n")
    bad = cli("run", "wf.yaml", "--replay", "bad.rec.yaml", cwd=project, env=offline)
    assert bad.returncode == 2 and "bad.rec.yaml:4:" in bad.stderr and "Traceback" not in bad.stderr


TESTS = """
workflow: wf.yaml
cases:
  - name: canned answers
    agents:
      writer: {summary: "wrote", data: {pages: 7}, patch: "%s"}
      reviewer: {summary: "all good"}
    expect:
      status: completed
      steps:
        write: {status: success, data: {pages: 7}, files: [notes.txt]}
        review: {summary: "^all good$"}
        count: {summary: "1"}
  - name: the writer is down, its fallback answers
    agents:
      writer: {unavailable: true}
      spare: {summary: "spare", data: {pages: 1}}
      reviewer: {summary: "ok"}
    commands:
      count: {summary: "42"}
    expect:
      steps:
        write: {degraded: true, fallback_used: spare, data: {pages: 1}}
        count: {summary: "42"}
  - name: expectations that do not hold
    agents:
      writer: [{fail: "overloaded"}, {summary: "late"}]
      reviewer: {summary: "ok"}
    expect:
      status: completed
      steps:
        write: {status: success, data: {pages: 2}}
"""

NOTES_PATCH = ("diff --git a/notes.txt b/notes.txt\\nnew file mode 100644\\n--- /dev/null\\n+++ b/notes.txt\\n"
               "@@ -0,0 +1 @@\\n+canned notes\\n")


def test_agentflow_test_runs_cases_offline_and_says_what_differs(cli, project, offline):
    (project / "wf.test.yaml").write_text(TESTS % NOTES_PATCH)
    done = cli("test", "wf.test.yaml", "--junit-xml", "results.xml", cwd=project, env=offline)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("PASS wf.test.yaml::canned answers (")
    assert lines[1].startswith("PASS wf.test.yaml::the writer is down, its fallback answers (")
    assert lines[2].startswith("FAIL wf.test.yaml::expectations that do not hold (")
    # no retries: the first answer fails the writer, the ladder goes to the spare, unanswered here
    assert lines[3] == "    status: expected completed, got failed (failed steps: write)"
    assert "steps.write.status: expected 'success', got 'failed'" in lines[4]
    assert "agent spare's call is not in case 'expectations that do not hold'" in lines[4]
    assert lines[-1].startswith("2 passed, 1 failed in ")
    suite = ET.parse(project / "results.xml").getroot()
    assert (suite.get("tests"), suite.get("failures")) == ("3", "1")
    assert [case.find("failure") is not None for case in suite] == [False, False, True]

    only = cli("test", "wf.test.yaml", "-k", "canned", cwd=project, env=offline)
    assert only.returncode == 0 and only.stdout.splitlines()[-1].startswith("1 case passed in "), only.stdout


def test_approvals_are_answered_by_the_test(cli, project, offline):
    (project / "gated.yaml").write_text("""
name: gated
steps:
  - {id: ship, approval: "Ship it?"}
  - {id: after, run: [echo, shipped], depends_on: [ship]}
""")
    (project / "gated.test.yaml").write_text("""
workflow: gated.yaml
cases:
  - name: approved
    approvals: {ship: {approve: true, comment: "fine"}}
    expect: {status: completed, steps: {ship: {status: success, data: {approved: true, comment: fine}},
             after: {summary: shipped}}}
  - name: rejected
    approvals: {ship: {approve: false}}
    expect: {status: failed, steps: {after: {status: not_run}}}
""")
    done = cli("test", "gated.test.yaml", cwd=project, env=offline, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1].startswith("2 cases passed")


@pytest.mark.parametrize("text, expected", [
    ("workflow: wf.yaml\ncases:\n  - name: a\n    expect:\n      steps:\n        wirte: {status: success}\n",
     "wf.test.yaml:6: cases.0.expect.steps.wirte: step `wirte` is not in the workflow; use one of write, review, count"),
    ("workflow: wf.yaml\ncases:\n  - name: a\n    agents:\n      writter: {summary: x}\n",
     "wf.test.yaml:5: cases.0.agents.writter: agent `writter` is not defined for the workflow"),
    ("workflow: wf.yaml\ncases:\n  - name: a\n    commands:\n      write: {summary: x}\n",
     "wf.test.yaml:5: cases.0.commands.write: `write` is not a `run:` or `call:` step of the workflow"),
    ("workflow: wf.yaml\ncases:\n  - name: a\n    expect: {stauts: completed}\n", "wf.test.yaml:4:"),
    ("workflow: missing.yaml\ncases:\n  - name: a\n", "wf.test.yaml:1: workflow: missing.yaml does not exist"),
    ("workflow: wf.yaml\ncases: [\n", "wf.test.yaml:3: is not valid YAML"),
], ids=["step", "agent", "command", "key", "workflow", "yaml"])
def test_a_wrong_test_file_is_located_and_nothing_runs(cli, project, offline, text, expected):
    (project / "wf.test.yaml").write_text(text)
    done = cli("test", "wf.test.yaml", cwd=project, env=offline)
    assert done.returncode == 2, done.stdout + done.stderr
    assert expected in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_test_files_are_found_under_tests_and_workflows(cli, project, offline):
    none = cli("test", cwd=project, env=offline)
    assert none.returncode == 2 and "no *.test.yaml file in tests/ or workflows/" in none.stderr
    (project / "workflows").mkdir()
    (project / "workflows" / "wf.yaml").write_text(WORKFLOW)
    (project / "workflows" / "wf.test.yaml").write_text(
        "workflow: wf.yaml\ncases:\n  - name: x\n    agents: {writer: {summary: w}, reviewer: {summary: r}}\n"
        "    expect: {status: failed}\n")  # no notes.txt is written: `count` fails
    found = cli("test", cwd=project, env=offline)
    assert found.returncode == 0 and "PASS workflows/wf.test.yaml::x" in found.stdout, found.stdout + found.stderr


def test_validate_checks_test_files_against_their_workflow(cli, project, offline):
    (project / "wf.test.yaml").write_text("workflow: wf.yaml\ncases:\n  - name: a\n    approvals:\n"
                                          "      write: {approve: true}\n")
    done = cli("validate", "wf.yaml", "wf.test.yaml", cwd=project, env=offline)
    assert done.returncode == 1
    assert "wf.yaml: ok (3 steps" in done.stdout
    assert "wf.test.yaml:5: cases.0.approvals.write: `write` is not a step that asks a person" in done.stdout


def test_new_writes_a_workflow_and_a_passing_test_for_every_pattern(cli, project, offline):
    for pattern in ("sequential", "parallel", "dag", "fan-out", "iterative", "approval"):
        done = cli("new", f"start-{pattern}", "--pattern", pattern, cwd=project, env=offline)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"pattern: {pattern} (as asked (--pattern))")
    described = cli("new", "fixer", "--describe", "fix the type errors of each module", cwd=project, env=offline)
    assert described.stdout.startswith("pattern: fan-out (the description says 'each')"), described.stdout
    text = (project / "workflows" / "fixer.yaml").read_text()
    assert text.startswith("# yaml-language-server: $schema=workflow.schema.json")
    assert 'description: "fix the type errors of each module"' in text
    assert (project / "workflows" / "workflow.schema.json").is_file()
    validated = cli("validate", *[str(p) for p in sorted((project / "workflows").glob("*.yaml"))], cwd=project,
                    env=offline)
    assert validated.returncode == 0 and validated.stdout.count(": ok (") == 14, validated.stdout
    tested = cli("test", "workflows", cwd=project, env=offline)
    assert tested.returncode == 0 and tested.stdout.splitlines()[-1].startswith("7 cases passed"), tested.stdout
    real = cli("run", "workflows/start-iterative.yaml", "--json", cwd=project, env=offline)
    assert real.returncode == 0 and json.loads(real.stdout)["steps"]["improve"]["result"]["metrics"]["score"] == 3


def test_new_refuses_to_overwrite_and_bad_names(cli, project, offline):
    assert cli("new", "once", cwd=project, env=offline).returncode == 0
    before = (project / "workflows" / "once.yaml").read_text()
    again = cli("new", "once", "--pattern", "dag", cwd=project, env=offline)
    assert again.returncode == 2 and "workflows/once.yaml and workflows/once.test.yaml exist already" in again.stderr
    assert (project / "workflows" / "once.yaml").read_text() == before
    bad = cli("new", "../escape", cwd=project, env=offline)
    assert bad.returncode == 2 and "'../escape' cannot name a workflow" in bad.stderr
    wrong = cli("new", "x", "--pattern", "star", cwd=project, env=offline)
    assert wrong.returncode == 2 and "--pattern 'star': use one of sequential, parallel" in wrong.stderr


TEMPLATED = """
name: templated
inputs:
  topic: {default: cats}
  where: {default: docs}
steps:
  - {id: facts, run: [echo, "cats sleep 16 hours"]}
  - id: notes
    template:
      source: notes.md.j2
      dest: "{{ inputs.where }}/{{ inputs.topic }}.md"
      vars: {author: "the notes step", count: "{{ 2 + 1 }}"}
  - id: again
    template: {inline: "replaced\\n", dest: "{{ inputs.where }}/{{ inputs.topic }}.md", mode: %s}
    depends_on: [notes]
    criticality: low
"""


def test_a_template_step_writes_a_rendered_file_as_its_work(cli, project, offline):
    (project / "notes.md.j2").write_text("# {{ inputs.topic }}\n{{ steps.facts.summary }}, by {{ author }} "
                                         "({{ count }})\n")
    (project / "templated.yaml").write_text(TEMPLATED % "create")
    git(project, "add", "-A")
    git(project, "commit", "-qm", "templated")
    done = cli("run", "templated.yaml", "--json", cwd=project, env=offline)
    document = json.loads(done.stdout)
    notes = document["steps"]["notes"]
    assert notes["status"] == "success" and notes["summary"] == "wrote docs/cats.md (2 lines)"
    assert [f["path"] for f in notes["result"]["changes"]["files"]] == ["docs/cats.md"]
    branch = document["work"]["branch"]
    assert git(project, "show", f"{branch}:docs/cats.md") == "# cats\ncats sleep 16 hours, by the notes step (3)\n"
    again = document["steps"]["again"]  # mode: create refuses the file the step before wrote
    assert again["status"] == "failed" and "dest 'docs/cats.md' exists already; set `mode: overwrite`" in again["summary"]
    assert not (project / "docs").exists()  # written in the run's tree only

    (project / "templated.yaml").write_text(TEMPLATED % "overwrite")
    replaced = json.loads(cli("run", "templated.yaml", "--json", cwd=project, env=offline).stdout)
    assert replaced["state"] == "Completed"
    assert git(project, "show", f"{replaced['work']['branch']}:docs/cats.md") == "replaced\n"
    escaped = json.loads(cli("run", "templated.yaml", "-i", "where=../outside", "--json", cwd=project,
                             env=offline).stdout)
    assert escaped["steps"]["notes"]["status"] == "failed"
    assert "dest '../outside/cats.md' is not inside the repository" in escaped["steps"]["notes"]["summary"]
    assert not (project.parent / "outside").exists()


def test_a_wrong_template_step_is_located(cli, project, offline):
    (project / "t.yaml").write_text("""name: t
steps:
  - id: a
    template: {source: missing.j2, dest: out.md}
  - id: b
    template: {inline: "{{ nope }}", dest: out2.md}
  - id: c
    template: {inline: "x", dest: ../escape.md}
""")
    done = cli("validate", "t.yaml", cwd=project, env=offline)
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert lines[0].startswith("t.yaml:4: steps[0].template.source: missing.j2: the template file not found")
    assert lines[1] == "t.yaml:6: steps[1].template.inline: template refers to unknown name `nope`; use one of: " \
                       "inputs, run, steps"
    assert lines[2].startswith("t.yaml:8: steps[2].template: dest '../escape.md' is not inside the repository")


def test_lint_warns_with_codes_and_strict_fails(cli, project, offline):
    (project / "wf.yaml").write_text(WORKFLOW.replace("  - {id: count, run: [sh, -c, 'wc -l < notes.txt'], "
                                                      "depends_on: [review]}\n",
                                                      "  - {id: count, run: [sh, -c, 'wc -l < notes.txt'], "
                                                      "depends_on: [review]}  # agentflow: ignore[S001]\n"))
    plain = cli("lint", "wf.yaml", cwd=project, env=offline)
    assert plain.returncode == 0, plain.stderr
    assert "wf.yaml:2: B001 best-practice: name: workflow `authoring` has no description" in plain.stdout
    assert "S001" not in plain.stdout and plain.stdout.splitlines()[-1].endswith("warnings in 1 file")
    strict = cli("lint", "wf.yaml", "--strict", "--json", cwd=project, env=offline)
    assert strict.returncode == 1
    codes = {w["code"] for w in json.loads(strict.stdout)}
    assert {"B001", "R001", "R002"} <= codes and "S001" not in codes
    (project / "broken.yaml").write_text("name: broken\nsteps: []\n")
    broken = cli("lint", "broken.yaml", cwd=project, env=offline)
    assert broken.returncode == 2 and "broken.yaml:2:" in broken.stderr


def test_agentflow_toml_configures_runs_and_config_show_says_from_where(cli, project, offline, tmp_path):
    (project / "agentflow.toml").write_text(f'max_patch_mb = 0.0001\nlog_file = "{tmp_path}/af.jsonl"\n')
    (project / "big.yaml").write_text("name: big\nsteps:\n  - {id: w, run: [sh, -c, 'seq 1 100000 > big.txt']}\n")
    git(project, "add", "-A")
    git(project, "commit", "-qm", "config")
    shown = cli("config", "show", "--json", cwd=project, env={**offline, "AGENTFLOW_METRICS_PORT": "9555"})
    assert shown.returncode == 0, shown.stderr
    document = json.loads(shown.stdout)
    assert document["max_patch_mb"] == {"value": 0.0001, "source": "agentflow.toml:1"}
    assert document["metrics_port"] == {"value": 9555, "source": "AGENTFLOW_METRICS_PORT"}
    assert document["workflows"] == {"value": "workflows", "source": "default"}
    done = cli("run", "big.yaml", "--json", cwd=project, env={**offline, "AGENTFLOW_LOG_FILE": ""})
    assert done.returncode == 1
    assert "MB limit" in json.loads(done.stdout)["steps"]["w"]["summary"]
    assert '"workflow": "big"' in (tmp_path / "af.jsonl").read_text()  # the log went where the file says
    (project / "agentflow.toml").write_text("max_patch_mb = -1\n")
    bad = cli("config", "show", cwd=project, env=offline)
    assert bad.returncode == 2
    assert bad.stderr.startswith("agentflow: agentflow.toml:1: max_patch_mb = -1: input should be greater than 0")


def test_cases_run_at_once_each_in_its_own_run(cli, project, offline, tmp_path):
    """Two cases that can only both pass together: each one's command leaves a mark and waits
    (up to a deadline) for the other's. With -j 2 they run at the same time, each its own run."""
    meeting = tmp_path / "meeting"
    meeting.mkdir()
    (project / "meet.yaml").write_text("""
name: meet
inputs:
  me: {type: string}
  other: {type: string}
  where: {type: string}
steps:
  - id: meet
    run: [sh, -c, 'touch "$1/$2"; n=0; until [ -e "$1/$3" ]; do n=$((n+1)); [ $n -gt 600 ] && exit 1; sleep 0.1; done; pwd',
          sh, "{{ inputs.where }}", "{{ inputs.me }}", "{{ inputs.other }}"]
""")
    (project / "meet.test.yaml").write_text(f"""
workflow: meet.yaml
cases:
  - name: a
    inputs: {{me: a, other: b, where: "{meeting}"}}
    expect: {{status: completed}}
  - name: b
    inputs: {{me: b, other: a, where: "{meeting}"}}
    expect: {{status: completed}}
""")
    done = cli("test", "meet.test.yaml", "-j", "2", cwd=project, env=offline, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert [line.split(" (")[0] for line in done.stdout.splitlines()[:2]] == [
        "PASS meet.test.yaml::a", "PASS meet.test.yaml::b"]
    assert sorted(p.name for p in meeting.iterdir()) == ["a", "b"]
