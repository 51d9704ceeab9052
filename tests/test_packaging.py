"""agentflow installs as one package, `agentflow`, beside a user's own `tasks` and `flows`.

A Prefect project usually has a `flows/` package, and many repositories a `tasks.py`: the
wheel must put nothing under those names into site-packages, and a user's step
`call: tasks:hello` must find the user's module.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.xdist_group("test_packaging")  # one worker runs the module: it shares a module fixture

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(REPO)],
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stdout + built.stderr
    (found,) = out.glob("agentflow-*.whl")
    return found


def test_wheel_has_one_top_level_package(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith((".dist-info", ".data"))}
    assert top == {"agentflow"}
    for module in ("agentflow/flows/engine/scheduler.py", "agentflow/tasks/agent_call.py",
                   "agentflow/flows/language/spec.py", "agentflow/flows/durability/journal.py"):
        assert module in names


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A fresh venv with the wheel installed; its dependencies come from this test's venv
    (a path entry, not a copy: nothing of this venv's own .pth hooks, such as the editable
    install of agentflow, runs there)."""
    home = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(home)], check=True, timeout=120)
    site = Path(subprocess.run([str(home / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = subprocess.run([sys.executable, "-m", "pip", "--python", str(home / "bin" / "python"), "install",
                                "-q", "--no-deps", "--no-index", str(wheel)], capture_output=True, text=True,
                               timeout=300)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return home


def test_shipped_workflow_and_user_tasks_module_beside_own_flows_and_tasks(venv, prefect_server, tmp_path):
    project = tmp_path / "project"
    (project / "flows").mkdir(parents=True)
    (project / "flows" / "__init__.py").write_text("RAISE = 'the user flows package'\n")
    (project / "tasks.py").write_text("def hello(who: str) -> str:\n    return f'hello {who} from the user tasks.py'\n")
    (project / "wf.yaml").write_text("""
name: user-project
steps:
  - {id: greet, call: "tasks:hello", with: {who: team}}
  - {id: markers, call: "agentflow.tasks.builtin:scan_markers", with: {repo: "."}}
""")
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    subprocess.run(["git", "add", "-A"], cwd=project, check=True)
    # No Claude credentials: the shipped workflow's Claude Code agents fall back to their
    # offline stand-ins (a machine's own key would make paid calls).
    keys = ("PYTHONPATH", "VIRTUAL_ENV", "ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN",
            "CLAUDE_CONFIG_DIR")
    env = {k: v for k, v in os.environ.items() if k not in keys}
    env.update(PREFECT_API_URL=prefect_server, HOME=str(tmp_path / "home"))
    agentflow = str(venv / "bin" / "agentflow")

    done = subprocess.run([agentflow, "run", "wf.yaml"], cwd=project, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "hello team from the user tasks.py" in done.stdout
    assert "markers" in done.stdout

    shipped = subprocess.run([agentflow, "run", str(REPO / "workflows" / "health-check.yaml")], cwd=project,
                             env=env, capture_output=True, text=True, timeout=300)
    assert shipped.returncode == 0, shipped.stdout + shipped.stderr
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import agentflow, flows, tasks; "
                            "print(agentflow.__file__); print(flows.RAISE); print(tasks.__file__)"],
                           cwd=project, env=env, capture_output=True, text=True, timeout=60)
    lines = where.stdout.splitlines()
    assert str(venv) in lines[0]
    assert lines[1] == "the user flows package"
    assert lines[2] == str(project / "tasks.py")


def test_old_spelling_of_a_builtin_names_the_new_one(venv, prefect_server, tmp_path):
    """`call: tasks.builtin:scan_markers` in a project with its own tasks.py: a clear error."""
    project = tmp_path / "old"
    project.mkdir()
    (project / "tasks.py").write_text("def hello():\n    return 'hi'\n")
    (project / "wf.yaml").write_text("name: old-spelling\nsteps:\n  - {id: s, call: 'tasks.builtin:scan_markers'}\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PREFECT_API_URL"] = prefect_server
    done = subprocess.run([str(venv / "bin" / "agentflow"), "run", "wf.yaml", "--json"], cwd=project, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    error = json.loads(done.stdout)["steps"]["s"]["result"]["error"]
    assert "`tasks` has no function `builtin`" not in error
    assert "agentflow's built-ins moved: write `agentflow.tasks.builtin:scan_markers`" in error, error
    assert "Traceback" not in done.stdout + done.stderr
