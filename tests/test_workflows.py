"""The shipped workflows run end to end and do what they say."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from agentflow import build_flow, load_workflow

REPO = Path(__file__).resolve().parent.parent
WORKFLOWS = REPO / "workflows"


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
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"], cwd=tmp_path,
                   check=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_finance_feature_sequential(finance_repo):
    """The four agents run in order; the validator finds the invalid VAT rate."""
    result = build_flow(load_workflow(WORKFLOWS / "finance-feature.yaml"))()
    assert list(result.steps) == ["validate", "context", "review", "profile"]
    assert "1 invalid VAT rates in 2 files" in result["validate"].summary
    assert "vat.ts:2: VAT rate 12%" in result["validate"].output
    assert result["review"].metrics["findings"] == 1
    assert result["profile"].metrics["p95_ms"] > 0


def test_health_check_parallel(finance_repo):
    """Three gateways are checked as three task runs next to the database profile."""
    result = build_flow(load_workflow(WORKFLOWS / "health-check.yaml"))()
    items = result["gateways"].data["items"]
    assert [i["item"] for i in items] == ["bKash", "Nagad", "NBR portal"]
    assert result["all_reachable"].status == "success"
    assert result["database"].metrics["invoices"] == 100


def test_performance_optimization_iterates_to_target(finance_repo):
    """The profiler repeats until p95 is under the target or 5 rounds have run."""
    result = build_flow(load_workflow(WORKFLOWS / "performance-optimization.yaml"))(target_ms=0.0001)
    assert result["profile"].metrics["iterations"] == 5
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
