"""Hostile definitions and values through the real `agentflow` command: a clear answer, a
distinct exit code, bounded time, never a traceback."""

from __future__ import annotations

import json
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HOSTILE = REPO / "tests" / "hostile"


def test_validate_refuses_the_whole_hostile_corpus_quickly(cli):
    files = sorted(str(p) for p in HOSTILE.glob("*.yaml"))
    started = time.monotonic()
    done = cli("validate", *files)
    elapsed = time.monotonic() - started
    assert done.returncode == 1
    assert "Traceback" not in done.stdout + done.stderr
    for path in files:
        assert f"{Path(path).name}:" in done.stdout
    assert f"{len(files)} of {len(files)} file(s) have problems" in done.stderr
    assert elapsed < 60, elapsed


def test_template_bombs_fail_their_step_and_name_the_template(cli, write, tmp_path):
    path = write("""
name: bombs
pattern: parallel
steps:
  - {id: power, run: [echo, "{{ 10 ** (10 ** 10) }}"], criticality: low}
  - {id: repeat, run: [echo, "{{ 'x' * 10 ** 9 }}"], criticality: low}
  - id: loops
    criticality: low
    run: [echo, "{% set r = range(1000) %}{% for a in r %}{% for b in r %}{% for c in r %}{% endfor %}{% endfor %}{% endfor %}"]
  - {id: wide, run: [echo, "{{ 'x' | center(10 ** 9) }}"], criticality: low}
  - {id: fine, run: [echo, "{{ 2 ** 10 }}"]}
""")
    started = time.monotonic()
    done = cli("run", str(path), "--json", cwd=tmp_path)
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr  # low-criticality failures let the run complete
    steps = json.loads(done.stdout)["steps"]
    assert "would have more than 10000 digits" in steps["power"]["result"]["error"]
    assert "{{ 10 ** (10 ** 10) }}" in steps["power"]["result"]["error"]
    assert "exceeds 1,000,000 characters" in steps["repeat"]["result"]["error"]
    assert "was stopped after 5s" in steps["loops"]["result"]["error"]
    assert "|center with a width over" in steps["wide"]["result"]["error"]
    assert steps["fine"]["result"]["summary"] == "1024"
    assert "Traceback" not in done.stdout + done.stderr
    assert elapsed < 90, elapsed
