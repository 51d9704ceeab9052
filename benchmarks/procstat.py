"""What the benchmarks read of processes from /proc: their tree, RSS and CPU time (Linux)."""

from __future__ import annotations

import collections
import os
import threading
import time
from pathlib import Path


def children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = collections.defaultdict(list)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            tree[parent].append(int(entry.name))
    return tree


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def treerss_kib(pid: int, tree: dict[int, list[int]]) -> int:
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        total += rss_kib(current)
        todo.extend(tree.get(current, ()))
    return total


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a process and its descendants (those alive, and those they waited for)."""
    tick = os.sysconf("SC_CLK_TCK")
    tree, total, todo = children(), 0, [pid]
    while todo:
        current = todo.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
        except (OSError, IndexError, ValueError):
            pass
        todo.extend(tree.get(current, ()))
    return total / tick


def cpu_when_idle(pid: int) -> float:
    """A process tree's CPU once it is idle (a server that has done what the runs left it:
    events, task runs to record): read when it took less than 0.05 s in the last second, or
    after 60 s."""
    last, deadline = tree_cpu_s(pid), time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(1)
        now = tree_cpu_s(pid)
        if now - last < 0.05:
            return now
        last = now
    return last


class PeakRss(threading.Thread):
    """The peak RSS of each watched process alone and with its descendants, every 0.5 s."""

    def __init__(self, pids: dict[str, int]):
        super().__init__(daemon=True)
        self.pids = pids
        self.alone: dict[str, int] = dict.fromkeys(pids, 0)
        self.tree: dict[str, int] = dict.fromkeys(pids, 0)
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(0.5):
            tree = children()
            for name, pid in self.pids.items():
                self.alone[name] = max(self.alone[name], rss_kib(pid))
                self.tree[name] = max(self.tree[name], treerss_kib(pid, tree))
