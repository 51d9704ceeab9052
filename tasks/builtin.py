"""Built-in local agents (kind `python`): repository analysis that needs no API key.

They back the shipped `repo-health` workflow. Each takes keyword arguments from a step's
`with:` and returns a dict (kept as the step's `data`) with a `summary`, or an AgentResult.
Files are the repository's tracked files (`git ls-files`), so build output and virtualenvs
are never scanned.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

from agentflow.errors import StepFailed
from agentflow.git import git
from agentflow.tasks.results import AgentResult, Artifact

_MARKER = re.compile(r"\b(TODO|FIXME|XXX|HACK)\b")
_TEST_PATTERNS = {
    "python": (re.compile(r"^(test_.*|.*_test)\.py$"), re.compile(r"^\s*(async\s+)?def test_\w*", re.M)),
    "javascript": (re.compile(r".*\.(test|spec)\.[cm]?[jt]sx?$"), re.compile(r"^\s*(it|test)\s*\(", re.M)),
    "go": (re.compile(r".*_test\.go$"), re.compile(r"^func Test\w*\(", re.M)),
    "rust": (re.compile(r".*\.rs$"), re.compile(r"#\[test\]")),
}
MAX_SCAN_BYTES = 2_000_000  # skip files larger than this when reading contents


def _git(repo: str, *args: str) -> str:
    done = git(repo, *args)
    if done.returncode != 0:
        stderr = done.stderr.decode(errors="replace").strip()
        raise StepFailed(f"git {' '.join(args)} failed in {repo}: {stderr[-500:]}")
    return done.stdout.decode(errors="replace")


def _has_commits(repo: str) -> bool:
    _git(repo, "rev-parse", "--git-dir")  # fails clearly when `repo` is not a repository
    return git(repo, "rev-parse", "--verify", "--quiet", "HEAD").returncode == 0


def tracked_files(repo: str) -> list[str]:
    return [line for line in _git(repo, "ls-files", "-z").split("\0") if line]


def git_history(repo: str = ".", days: int = 90) -> dict[str, Any]:
    """Commits, authors and the most often changed files over the last `days` days."""
    if not _has_commits(repo):
        return {"summary": "no commits yet", "commits": 0, "authors": {}, "most_changed": {}, "head": ""}
    log = _git(repo, "log", f"--since={int(days)} days ago", "--name-only", "--format=@@%h%x09%an%x09%ad",
               "--date=short")
    commits, authors, changed = 0, Counter(), Counter()
    for line in log.splitlines():
        if line.startswith("@@"):
            commits += 1
            parts = line[2:].split("\t")
            if len(parts) > 1:
                authors[parts[1]] += 1
        elif line.strip():
            changed[line.strip()] += 1
    head = _git(repo, "rev-parse", "--short", "HEAD").strip() if commits else ""
    return {
        "summary": f"{commits} commits by {len(authors)} authors in the last {days} days",
        "commits": commits,
        "authors": dict(authors.most_common(10)),
        "most_changed": dict(changed.most_common(10)),
        "head": head,
    }


def scan_markers(repo: str = ".", top: int = 10) -> dict[str, Any]:
    """TODO/FIXME/XXX/HACK markers in tracked text files."""
    per_file: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    for name in tracked_files(repo):
        text = _read_text(Path(repo) / name)
        if text is None:
            continue
        for match in _MARKER.finditer(text):
            per_file[name] += 1
            kinds[match.group(1)] += 1
    total = sum(per_file.values())
    return {
        "summary": f"{total} markers ({', '.join(f'{k} {v}' for k, v in kinds.most_common()) or 'none'}) "
                   f"in {len(per_file)} files",
        "total": total,
        "by_kind": dict(kinds),
        "top_files": dict(per_file.most_common(top)),
    }


def count_tests(repo: str = ".") -> dict[str, Any]:
    """Test files and test functions, by language, recognised by name conventions."""
    files: Counter[str] = Counter()
    functions: Counter[str] = Counter()
    for name in tracked_files(repo):
        base = Path(name).name
        for language, (file_pattern, function_pattern) in _TEST_PATTERNS.items():
            if file_pattern.match(base):
                text = _read_text(Path(repo) / name) or ""
                found = len(function_pattern.findall(text))
                if language == "rust" and not found:
                    continue
                files[language] += 1
                functions[language] += found
    total = sum(functions.values())
    return {
        "summary": f"{total} tests in {sum(files.values())} test files"
                   + (f" ({', '.join(f'{k} {v}' for k, v in functions.most_common())})" if total else ""),
        "tests": total,
        "test_files": sum(files.values()),
        "by_language": dict(functions),
    }


def largest_files(repo: str = ".", top: int = 10) -> dict[str, Any]:
    """The largest tracked files."""
    sizes = []
    for name in tracked_files(repo):
        path = Path(repo) / name
        if path.is_file():
            sizes.append((path.stat().st_size, name))
    sizes.sort(reverse=True)
    total = sum(size for size, _ in sizes)
    biggest = sizes[:top]
    lead = f"; largest {biggest[0][1]} ({_kib(biggest[0][0])})" if biggest else ""
    return {
        "summary": f"{len(sizes)} tracked files, {_kib(total)} in all{lead}",
        "files": len(sizes),
        "total_bytes": total,
        "largest": {name: size for size, name in biggest},
    }


def run_linter(repo: str = ".") -> AgentResult:
    """Ruff on a Python repository if ruff is installed; skipped (not failed) otherwise."""
    tracked = tracked_files(repo)
    if not any(name.endswith(".py") for name in tracked):
        return AgentResult(status="skipped", summary="no Python files: no linter to run")
    ruff = shutil.which("ruff")
    if ruff is None:
        return AgentResult(status="skipped", summary="ruff is not installed (pip install ruff to lint)")
    done = subprocess.run([ruff, "check", "--statistics", "--exit-zero", "."], cwd=repo, capture_output=True,
                          text=True, timeout=300)
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    findings = sum(int(line.split()[0]) for line in lines if line.split() and line.split()[0].isdigit())
    return AgentResult(summary=f"ruff: {findings} findings", output=done.stdout,
                       data={"findings": findings, "rules": lines[:20]})


def write_report(prompt: str, path: str, base: str = "") -> AgentResult:
    """Write the step's rendered prompt (the report's markdown) to `path`, relative to `base`
    if it is relative and `base` is given (`{{ run.origin }}`: the user's tree, not the run's
    workspace, for a report meant to be read where the run was started)."""
    target = Path(base) / path if base and not Path(path).is_absolute() else Path(path)
    path = str(target)
    existed = target.exists()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(prompt, encoding="utf-8")
    return AgentResult(
        summary=f"report written to {path} ({len(prompt.splitlines())} lines)",
        output=prompt,
        artifacts=[Artifact(path=str(path), action="modified" if existed else "created")],
        data={"path": str(path)},
    )


def _read_text(path: Path) -> str | None:
    try:
        if not path.is_file() or path.stat().st_size > MAX_SCAN_BYTES:
            return None
        raw = path.read_bytes()
    except OSError:
        return None
    if b"\0" in raw[:4096]:
        return None  # binary
    return raw.decode("utf-8", errors="replace")


def _kib(size: int) -> str:
    return f"{size / 1024:.1f} KiB" if size < 1024 * 1024 else f"{size / 1024 / 1024:.1f} MiB"


def least_tested(repo: str = ".", tests: str = "tests") -> dict[str, Any]:
    """Which Python modules the tests refer to: a module counts as covered when a test file
    names it (an import, a path). A coarse but honest coverage figure that needs no test run:
    `coverage` (covered / modules), and the least-covered module (named by no test; the
    largest first), for the next step to write tests for."""
    files = [n for n in tracked_files(repo) if n.endswith(".py")]
    test_files = [n for n in files if n.startswith(tests.rstrip("/") + "/") or Path(n).name.startswith("test_")]
    modules = [n for n in files if n not in test_files and Path(n).name != "__init__.py"]
    texts = [_read_text(Path(repo) / n) or "" for n in test_files]
    mentions = {m: sum(1 for t in texts if re.search(rf"\b{re.escape(Path(m).stem)}\b", t)) for m in modules}
    covered = sum(1 for count in mentions.values() if count)
    if not modules:
        return {"summary": "no Python modules to cover", "coverage": 1.0, "module": None, "modules": 0}
    size = {m: (Path(repo) / m).stat().st_size for m in modules}
    least = min(modules, key=lambda m: (mentions[m], -size[m], m))
    coverage = round(covered / len(modules), 4)
    return {"summary": f"{covered} of {len(modules)} modules named by a test ({coverage:.0%}); least covered: {least}",
            "coverage": coverage, "module": least, "name": Path(least).stem, "modules": len(modules),
            "covered": covered}
