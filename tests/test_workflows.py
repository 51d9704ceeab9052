"""The shipped workflows run end to end and do what they say.

Their agents are Claude Code subagents with offline stand-ins as fallbacks (workflows/
agents.yaml). These tests run without Claude credentials, whatever the machine has, so
every claude-code step must be answered by its stand-in and say so (degraded).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from agentflow import build_flow, load_workflow
from agentflow.tasks.backends import claude

REPO = Path(__file__).resolve().parent.parent
WORKFLOWS = REPO / "workflows"
# Everything that would let Claude Code find credentials (tasks/backends/claude.py).
CLAUDE_ENVIRONMENT = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN",
                      "CLAUDE_CODE_USE_BEDROCK", "CLAUDE_CODE_USE_VERTEX", "CLAUDE_CONFIG_DIR")
SUBAGENTS = ("business-logic-validator", "code-reviewer", "performance-profiler", "api-integration-tester",
             "context-gathering")


@pytest.fixture(autouse=True)
def no_claude_credentials(tmp_path_factory, monkeypatch):
    """No API key in the environment and a HOME without a Claude Code login (~/.claude)."""
    monkeypatch.setenv("HOME", str(tmp_path_factory.mktemp("home")))
    for name in CLAUDE_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    assert claude.credentials() is None


def assert_degraded(result, step: str, agent: str) -> None:
    """`step` was answered by `agent`'s offline stand-in because `agent` could not serve."""
    answer = result[step]
    assert answer.status == "success", answer.summary
    assert answer.degraded is True
    assert answer.fallback_used == f"{agent}-local"
    assert answer.primary_agent == agent
    assert answer.skipped_agent is None
    assert "session_id" not in answer.metrics  # no Claude Code session ran


@pytest.fixture
def finance_repo(tmp_path, monkeypatch):
    """A small git repository with a finance module, as the current directory."""
    finance = tmp_path / "services" / "finance"
    finance.mkdir(parents=True)
    (finance / "vat.ts").write_text("export const VAT_RATE = 15; // VAT 15% standard\n"
                                    "// TODO: VAT 12% for exports is wrong\nexport function total() {}\n")
    (finance / "invoice.py").write_text("def invoice():\n    return 1\n")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(["git", "add", "-A"], cwd=tmp_path, check=True)
    # A commit of its own (message): repositories made alike in one second would share one,
    # and so cache entries across tests.
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", f"init {tmp_path.name}"],
                   cwd=tmp_path, check=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.unit
def test_shipped_agents_are_subagents_with_local_fallbacks():
    """Each seed agent is a claude-code agent running its .claude/agents/ file, whose tools
    are the ones it is allowed, with the offline stand-in as its fallback."""
    workflow = load_workflow(WORKFLOWS / "finance-feature.yaml")
    for name in SUBAGENTS:
        agent, local = workflow.agents[name], workflow.agents[f"{name}-local"]
        assert (agent.kind, agent.subagent, agent.fallback) == ("claude-code", name, f"{name}-local")
        assert local.kind == "python" and local.callable.startswith("agentflow.tasks.standins:")
        assert local.criticality == agent.criticality
        subagent = workflow.subagents[name]
        assert subagent.name == name and subagent.description
        assert subagent.tools == agent.allowed_tools
        assert "Bash" not in subagent.tools or name in ("performance-profiler", "api-integration-tester")
        assert "## Summary" in subagent.prompt and "## Metrics" in subagent.prompt
    assert workflow.degraded.max_fallback_retries == 2
    assert workflow.degraded.fail_workflow_if_critical_skipped is True
    assert workflow.agents["business-logic-validator"].criticality == "critical"
    assert workflow.agents["performance-profiler"].skip_if_unavailable is True


def test_finance_feature_sequential(finance_repo):
    """The four agents run in order, each degraded to its stand-in without credentials; the
    validator's stand-in finds the invalid VAT rate."""
    result = build_flow(load_workflow(WORKFLOWS / "finance-feature.yaml"))()
    assert result.status == "completed"
    assert list(result.steps) == ["validate", "context", "review", "profile"]
    for step, agent in [("validate", "business-logic-validator"), ("context", "context-gathering"),
                        ("review", "code-reviewer"), ("profile", "performance-profiler")]:
        assert_degraded(result, step, agent)
    assert "1 invalid VAT rates in 2 files" in result["validate"].summary
    assert "vat.ts:2: VAT rate 12%" in result["validate"].output
    assert result["review"].metrics["findings"] == 1
    assert result["profile"].metrics["p95_ms"] > 0


def test_health_check_parallel(finance_repo):
    """Three gateways are checked as three task runs next to the database profile, each
    degraded to its stand-in without credentials."""
    result = build_flow(load_workflow(WORKFLOWS / "health-check.yaml"))()
    assert result.status == "completed"
    items = result["gateways"].data["items"]
    assert [i["item"] for i in items] == ["bKash", "Nagad", "NBR portal"]
    for item in items:
        assert (item["status"], item["degraded"], item["fallback_used"], item["primary_agent"]) == (
            "success", True, "api-integration-tester-local", "api-integration-tester")
        assert "no endpoint configured" in item["summary"]
    assert_degraded(result, "database", "performance-profiler")
    assert result["all_reachable"].status == "success"
    assert result["database"].metrics["invoices"] == 100


def test_performance_optimization_iterates_to_target(finance_repo):
    """The profiler repeats until p95 is under the target or 5 rounds have run."""
    result = build_flow(load_workflow(WORKFLOWS / "performance-optimization.yaml"))(target_ms=0.0001)
    assert result.status == "completed"
    assert result["profile"].metrics["iterations"] == 5
    assert_degraded(result, "profile", "performance-profiler")
    assert_degraded(result, "review", "code-reviewer")
    assert result["profile"].metrics["until_met"] is False
    easy = build_flow(load_workflow(WORKFLOWS / "performance-optimization.yaml"))(target_ms=1e9)
    assert easy["profile"].metrics["iterations"] == 1
    assert "after 1 rounds (target met: True)" in easy["review"].summary or easy["review"].status == "success"


def test_repo_health_report(finance_repo):
    """repo-health writes a markdown report built from the other steps' outputs."""
    report = finance_repo / "out" / "health.md"
    result = build_flow(load_workflow(WORKFLOWS / "repo-health.yaml"))(report=str(report))
    text = report.read_text()
    assert "- History: 1 commits by 1 authors" in text
    assert "- Markers: 1 markers (TODO 1) in 1 files" in text
    assert "| services/finance/vat.ts |" in text
    assert result["marker_lines"].status == "success"
    assert [a.model_dump() for a in result["report"].artifacts] == [{"path": str(report), "action": "created"}]


def test_ladder_demo(tmp_path, monkeypatch):
    """ladder-demo: the failing primary is tried with its retry, then its fallback answers
    (degraded); every rung of the skippable linter fails, so its step is skipped and the run
    completes, reporting both."""
    monkeypatch.chdir(tmp_path)
    result = build_flow(load_workflow(WORKFLOWS / "ladder-demo.yaml"))()
    assert result.status == "completed" and result.failed_steps == []
    answer = result["answer"]
    assert (answer.status, answer.degraded, answer.fallback_used, answer.primary_agent) == (
        "success", True, "local-answer", "flaky-service")
    assert answer.summary == "local-answer: Summarise the invoice module (answered offline)"  # the suffix
    assert answer.metrics["answers"] == 1
    assert result.steps["answer"].attempts == 2  # the primary's retry ran before the fallback
    lint = result["lint"]
    assert (lint.status, lint.skipped_agent, lint.fallback_used) == ("skipped", "remote-linter", None)
    assert "`remote-linter`: " in lint.error and "`local-linter`: " in lint.error  # every rung, and why
    assert "local-linter: no lint configuration here" in lint.error
    assert result["report"].summary == "answer degraded=True (local-answer), lint skipped (remote-linter)"
    assert "- answer: status success, degraded True: `flaky-service` failed" in result["report"].output
    assert result["ladder_acted"].status == "success"


@pytest.fixture
def python_repo(tmp_path, monkeypatch):
    """A git repository with two modules, one of them named by a test, as the current directory."""
    (tmp_path / "shop").mkdir()
    (tmp_path / "shop" / "cart.py").write_text("def total(items):\n    return sum(items)\n")
    (tmp_path / "shop" / "prices.py").write_text("def vat(amount):\n    return amount * 15 // 100\n\n\n"
                                                 "class Rate:\n    pass\n")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_cart.py").write_text("from shop.cart import total\n")
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", f"init {tmp_path.name}"]):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _branch_tree(repo, branch: str) -> str:
    return subprocess.run(["git", "rev-parse", f"{branch}^{{tree}}"], cwd=repo, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_increase_test_coverage_delivers_a_branch_and_is_not_paid_twice(python_repo):
    """The coverage workflow (offline: the test-writer's stand-in) writes a passing test for the
    least-covered module under tests/, coverage rises, a branch holds it; run again, the writer
    is answered from the cache and the branch holds the same tree. The user's tree is untouched."""
    flow = build_flow(load_workflow(WORKFLOWS / "increase-test-coverage.yaml"))
    first, second = flow(), flow()
    assert first.status == "completed", first.failed_steps
    assert first["measure"].data["module"] == "shop/prices.py"
    assert first["write"].degraded and first["write"].fallback_used == "test-writer-local"
    assert [(f.path, f.action) for f in first["write"].changes.files] == [("tests/test_prices_agentflow.py",
                                                                          "created")]
    assert first["after"].data["coverage"] == 1.0 > first["measure"].data["coverage"]
    assert first.steps["coverage_rose"].status == "success"
    assert second.steps["write"].cached  # the writer was not called again
    assert _branch_tree(python_repo, first.work["branch"]) == _branch_tree(python_repo, second.work["branch"])
    assert not (python_repo / "tests" / "test_prices_agentflow.py").exists()


def test_every_shipped_workflow_passes_its_offline_tests(cli, tmp_path):
    """`agentflow test workflows`: each workflow in workflows/ has a test file, and every case
    passes with no agent called (CI runs them; a change to a workflow that breaks it fails here)."""
    shipped = {p.stem for p in WORKFLOWS.glob("*.yaml") if p.name != "agents.yaml" and ".test" not in p.name}
    tested = {p.name.removesuffix(".test.yaml") for p in WORKFLOWS.glob("*.test.yaml")}
    assert shipped == tested, f"workflows without tests: {sorted(shipped - tested)}"
    done = cli("test", "workflows", "--junit-xml", str(tmp_path / "results.xml"), cwd=REPO,
               env={"PREFECT_HOME": str(tmp_path / "home")})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "FAIL" not in done.stdout and " cases passed in " in done.stdout.splitlines()[-1]
    assert (tmp_path / "results.xml").read_text().count("<testcase ") >= 2 * len(shipped)
