"""Step bodies for the benchmarks: nothing, a fixed sleep, or files changed."""

import time


def noop() -> None:
    return None


def sleep1() -> str:
    time.sleep(1)
    return "slept 1 s"


def touch_files(files: int = 1, tag: str = "") -> str:
    """Change `files` files of a B8 repository (benchmarks/bench_workspace.py), in the step's directory."""
    from pathlib import Path

    for n in range(files):
        Path(f"pkg{n % 20}", f"module_{n}.py").write_text(f"VALUE = {n}  # {tag}\n" + "# edited\n" * 30)
    return f"changed {files} files"
