"""Hostile definitions and values through the real `agentflow` command: a clear answer, a
distinct exit code, bounded time, never a traceback."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
HOSTILE = REPO / "tests" / "hostile"


def test_validate_refuses_the_whole_hostile_corpus_in_bounded_time(cli):
    files = sorted(str(p) for p in HOSTILE.glob("*.yaml"))
    done = cli("validate", *files, timeout=120)  # a bomb that got through would hang it: killed, and failed
    assert done.returncode == 1
    assert "Traceback" not in done.stdout + done.stderr
    for path in files:
        assert f"{Path(path).name}:" in done.stdout
    assert f"{len(files)} of {len(files)} file(s) have problems" in done.stderr


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
    done = cli("run", str(path), "--json", cwd=tmp_path, timeout=180)  # each bomb is stopped, or this is killed
    assert done.returncode == 0, done.stderr  # low-criticality failures let the run complete
    steps = json.loads(done.stdout)["steps"]
    assert "would have more than 10000 digits" in steps["power"]["result"]["error"]
    assert "{{ 10 ** (10 ** 10) }}" in steps["power"]["result"]["error"]
    assert "exceeds 1,000,000 characters" in steps["repeat"]["result"]["error"]
    assert "was stopped after 5s" in steps["loops"]["result"]["error"]
    assert "|center with a width over" in steps["wide"]["result"]["error"]
    assert steps["fine"]["result"]["summary"] == "1024"
    assert "Traceback" not in done.stdout + done.stderr


INPUTS = """
name: typed
inputs:
  who: {default: world}
  count: {type: integer, default: 1}
  rate: {type: number, default: 0.5}
  items: {type: array, default: []}
steps:
  - {id: hello, run: [echo, "{{ inputs.who }} {{ inputs.count }} {{ inputs.rate }} {{ inputs['items'] | length }}"]}
"""


def test_hostile_input_values_are_refused_with_short_messages(cli, write, tmp_path):
    path = write(INPUTS)
    cases = [
        (["-i", "count=" + "9" * 5000], "input `count` must be integer of at most 100 digits"),
        (["-i", "rate=1e999"], "input `rate` must be a finite number"),
        (["-i", "items=" + "[" * 60000 + "]" * 60000], "input `items`: the JSON is nested too deeply"),
        (["-i", "items=" + "[" * 40 + "]" * 40], "input `items` is nested more than 32 levels deep"),
        (["-i", "who=a", "-i", "who=b"], "-i who: given more than once"),
        (["-i", "who=@" + str(tmp_path / "missing.txt")], "cannot read the file (No such file or directory)"),
        (["-i", "nobody=1"], "unknown input `nobody`"),
    ]
    for args, message in cases:
        done = cli("run", str(path), *args, cwd=tmp_path)
        assert done.returncode == 2, (args[:2], done.stdout, done.stderr)
        assert message in done.stderr, (message, done.stderr)
        assert "Traceback" not in done.stdout + done.stderr
        assert len(done.stderr) < 1000  # values are shortened, never echoed whole


def test_invalid_utf8_input_is_refused(prefect_server, write, tmp_path):
    import os
    import subprocess
    import sys

    path = write(INPUTS)
    env = {**os.environ, "PREFECT_API_URL": prefect_server}
    done = subprocess.run([sys.executable.encode(), b"-m", b"agentflow", b"run", str(path).encode(), b"-i",
                           b"who=caf\xff"], cwd=tmp_path, env=env, capture_output=True, timeout=120)
    assert done.returncode == 2
    assert b"input `who` is not valid UTF-8 text" in done.stderr
    assert b"Traceback" not in done.stdout + done.stderr


def test_values_from_files(cli, write, tmp_path):
    path = write(INPUTS)
    (tmp_path / "who.txt").write_text("a long\nmulti-line value")
    (tmp_path / "inputs.json").write_text(json.dumps({"count": 3, "items": [1, 2]}))
    done = cli("run", str(path), "-i", "who=@who.txt", "--inputs-file", "inputs.json", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["steps"]["hello"]["result"]["output"] == "a long\nmulti-line value 3 0.5 2\n"
    literal = cli("run", str(path), "-i", "who=@@team", "--json", cwd=tmp_path)
    assert json.loads(literal.stdout)["steps"]["hello"]["result"]["summary"] == "@team 1 0.5 0"
    twice = cli("run", str(path), "-i", "count=2", "--inputs-file", "inputs.json", cwd=tmp_path)
    assert twice.returncode == 2 and "given more than once (or also in --inputs-file)" in twice.stderr


def test_an_unreachable_server_is_one_line_and_a_log_file(cli, tmp_path):
    """Exit 3, no traceback on the terminal: what to do, and the file holding the traceback."""
    done = cli("runs", env={"PREFECT_API_URL": "http://127.0.0.1:9/api", "PREFECT_CLIENT_MAX_RETRIES": "0",
                            "PREFECT_HOME": str(tmp_path / "home")}, timeout=120)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    line = done.stderr.strip()
    assert line.startswith("agentflow: cannot reach the Prefect API at http://127.0.0.1:9/api: start the server "
                           "(agentflow server start), or unset PREFECT_API_URL") and "\n" not in line
    log = Path(line.rsplit("details in ", 1)[1])
    assert log.is_relative_to(tmp_path / "home") and "Traceback" in log.read_text()


def test_an_input_cannot_point_files_outside_the_tree(cli, write, tmp_path):
    path = write("""
name: globbed
inputs:
  where: {default: src}
steps:
  - {id: read, agent: lister, files: ["{{ inputs.where }}/**/*.py"], prompt: "list"}
agents:
  lister: {kind: python, callable: "probe:echo"}
""")
    done = cli("run", str(path), "-i", "where=../../etc", "--json", cwd=tmp_path)
    assert done.returncode == 1
    error = json.loads(done.stdout)["steps"]["read"]["result"]["error"]
    assert "files: `../../etc/**/*.py` points outside the working directory" in error


FORGED = "1999-01-01 00:00:00.000 ERROR    [inject 00000000 deploy] FORGED"
PAYLOAD = f"fine\x1b]0;pwned\x07\x1b[2J\rOVERWRITE\n{FORGED}"
TAG = "t\x1b[31mred"  # short: a for_each item named by its value


def _on_a_terminal(argv: list[str], cwd: Path, env: dict) -> bytes:
    """What `argv` writes to a pseudo-terminal (a person's terminal: colours on, live view)."""
    import os
    import pty
    import subprocess

    leader, follower = pty.openpty()
    process = subprocess.Popen(argv, cwd=cwd, env={**env, "TERM": "xterm-256color"}, stdin=follower,
                               stdout=follower, stderr=follower)
    os.close(follower)
    written = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the other side closed: the process ended
            break
        if not chunk:
            break
        written += chunk
    process.wait(timeout=240)
    os.close(leader)
    return written


def test_text_from_an_input_or_a_step_cannot_forge_a_line_or_drive_the_terminal(prefect_server, write, tmp_path):
    """An input, and a step's summary made of it, holding a line break and a forged log line,
    OSC and CSI escapes and a bare CR: the live view and `status` on a terminal show them as
    text (`\\x1b`, `\\n`), and `logs RUN` keeps it on the step's own line."""
    import os
    import sys

    path = write("""
name: forging
inputs:
  note: {type: string}
  tag: {type: string}
steps:
  - id: say
    run: [sh, -c, 'printf "## Summary\\n%s\\n" "$1"', sh, "{{ inputs.note }}"]
  - {id: fan, for_each: ["{{ inputs.tag }}"], run: [echo, ok]}
""")
    env = {**os.environ, "PREFECT_API_URL": prefect_server}
    argv = [sys.executable, "-m", "agentflow"]
    shown = _on_a_terminal([*argv, "run", str(path), "-i", f"note={PAYLOAD}", "-i", f"tag={TAG}"], tmp_path, env)
    assert b"completed" in shown, shown[-2000:]
    for raw in (b"\x1b]0;pwned", b"\x1b[2J", b"\rOVERWRITE", b"\n" + FORGED.encode(), b"t\x1b[31mred"):
        assert raw not in shown, raw
    text = shown.decode(errors="replace")
    assert "fine\\x1b]0;pwned\\x07\\x1b[2J" in text and "fan[t\\x1b[31mred]" in text, text
    run_id = next(line.split()[1] for line in shown.decode(errors="replace").splitlines() if line.startswith("run "))
    status = _on_a_terminal([*argv, "status", run_id], tmp_path, env)
    assert b"fan[t\\x1b[31mred]" in status and b"t\x1b[31mred" not in status, status[-2000:]
    logs = subprocess_run([*argv, "logs", run_id], tmp_path, env)
    assert logs.returncode == 0, logs.stderr
    assert not [line for line in logs.stdout.splitlines() if line.startswith("1999-01-01")], logs.stdout
    assert "\x1b" not in logs.stdout and "\r" not in logs.stdout, repr(logs.stdout)
    assert "fine\\x1b]0;pwned" in logs.stdout and "fan[t\\x1b[31mred]" in logs.stdout


def subprocess_run(argv: list[str], cwd: Path, env: dict):
    import subprocess

    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)


@pytest.fixture
def not_prefect():
    """A real HTTP server on 127.0.0.1 that answers every request with a web page."""

    class Page(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(b"<html>a web page</html>")

        do_POST = do_GET

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/api"
    server.shutdown()


def test_a_url_that_is_not_a_prefect_api_is_said_so(cli, not_prefect, tmp_path):
    """`runs` reads the API itself: it says the URL is not a Prefect API. `run` goes through
    Prefect's client, whose error is unforeseen here: an internal error, one line and a log."""
    env = {"PREFECT_API_URL": not_prefect, "PREFECT_HOME": str(tmp_path / "home")}
    listed = cli("runs", env=env, timeout=120)
    assert listed.returncode == 3 and "Traceback" not in listed.stderr
    assert listed.stderr.strip() == (f"agentflow: {not_prefect} answered /api/flow_runs/filter with something other "
                                     "than JSON: it is not a Prefect server's API; set PREFECT_API_URL to one "
                                     "(it ends in /api)")
    (tmp_path / "wf.yaml").write_text("name: nowhere\nsteps:\n  - {id: a, run: [echo, a]}\n")
    done = cli("run", "wf.yaml", cwd=tmp_path, env=env, timeout=120)
    line = done.stderr.strip()
    assert done.returncode == 3 and line.startswith("agentflow: internal error: ") and "\n" not in line, line
    log = Path(line.rsplit("details in ", 1)[1])
    assert log.is_relative_to(tmp_path / "home") and "Traceback" in log.read_text()
