"""How runs are named in listings (durability/history.py)."""

from __future__ import annotations

import pytest

from agentflow.flows.durability.history import short_ids

pytestmark = pytest.mark.unit  # needs no Prefect server: `pytest -m unit`


def test_runs_created_together_are_shown_by_a_prefix_no_other_shares():
    # A deployment's schedule creates its runs at once, with time-ordered ids (UUIDv7): they
    # share their first ten characters or more.
    together = ["01a23a19-7c2e-7d10-8000-000000000001", "01a23a19-7c2e-7d10-8000-000000000002",
                "01a23a19-7c2f-7000-8000-000000000003"]
    alone = "9f1c0d2e-0000-4000-8000-000000000000"
    shown = short_ids([*together, alone])
    assert shown[alone] == "9f1c0d2e"  # the usual 8 where nothing else starts so
    assert len(set(shown.values())) == 4
    for run_id, prefix in shown.items():
        assert run_id.startswith(prefix)
        assert not any(other != run_id and other.startswith(prefix) for other in shown)
    assert shown[together[2]] == "01a23a19-7c2f"
