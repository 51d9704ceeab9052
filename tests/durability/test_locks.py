"""StepLocks: Prefect's LockManager protocol on flock, and a dead holder's lock freed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from prefect.locking.protocol import LockManager

from agentflow.flows.durability.locks import StepLocks

pytestmark = pytest.mark.unit  # needs no Prefect server: `pytest -m unit`

HOLD_AND_WAIT = """
import sys
from agentflow.flows.durability.locks import StepLocks
from pathlib import Path
locks = StepLocks(Path(sys.argv[1]))
assert locks.acquire_lock("key-1", "other-holder", acquire_timeout=5)
print("held", flush=True)
sys.stdin.read()  # hold until killed
"""


@contextmanager
def running(argv: list[str]) -> Iterator[subprocess.Popen]:
    process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        yield process
    finally:
        process.kill()
        process.wait()


def test_implements_prefects_protocol(tmp_path):
    assert isinstance(StepLocks(tmp_path), LockManager)


def test_second_holder_waits_until_release(tmp_path):
    first, second = StepLocks(tmp_path), StepLocks(tmp_path)
    assert first.acquire_lock("k", "a")
    assert first.is_lock_holder("k", "a") and not first.is_lock_holder("k", "b")
    assert second.is_locked("k")
    assert second.acquire_lock("k", "b", acquire_timeout=0.2) is False
    assert second.wait_for_lock("k", timeout=0.2) is False
    first.release_lock("k", "a")
    assert not second.is_locked("k")
    assert second.acquire_lock("k", "b", acquire_timeout=0)
    second.release_lock("k", "b")


def test_holder_may_take_its_lock_again_and_others_cannot_release_it(tmp_path):
    locks = StepLocks(tmp_path)
    assert locks.acquire_lock("k", "a")
    assert locks.acquire_lock("k", "a", acquire_timeout=0)  # re-entrant for the same holder
    with pytest.raises(ValueError, match="no lock held by b"):
        locks.release_lock("k", "b")
    locks.release_lock("k", "a")
    with pytest.raises(ValueError):
        locks.release_lock("k", "a")


def test_two_threads_of_one_process_exclude_each_other(tmp_path):
    """Prefect runs tasks in threads: one manager, two holders, one at a time."""
    locks = StepLocks(tmp_path)
    inside, peak, order = [0], [0], []
    guard = threading.Lock()

    def work(holder: str) -> None:
        assert locks.acquire_lock("shared", holder, acquire_timeout=10)
        with guard:
            inside[0] += 1
            peak[0] = max(peak[0], inside[0])
            order.append(holder)
        with guard:
            inside[0] -= 1
        locks.release_lock("shared", holder)

    threads = [threading.Thread(target=work, args=(f"h{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert peak[0] == 1 and sorted(order) == sorted(f"h{i}" for i in range(8))


def test_a_killed_holder_frees_its_lock(tmp_path):
    """SIGKILL of the process holding a lock: the next run takes it at once, no pid compared."""
    with running([sys.executable, "-c", HOLD_AND_WAIT, str(tmp_path)]) as holder:
        assert holder.stdout.readline().strip() == "held"
        locks = StepLocks(tmp_path)
        assert locks.is_locked("key-1")
        assert locks.acquire_lock("key-1", "me", acquire_timeout=0) is False
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        assert locks.wait_for_lock("key-1", timeout=5)
        assert locks.acquire_lock("key-1", "me", acquire_timeout=0)


def test_commands_started_while_holding_do_not_inherit_the_lock(tmp_path):
    """A command a step starts (and that may outlive it) must not keep the step's lock."""
    locks = StepLocks(tmp_path)
    assert locks.acquire_lock("k", "a")
    with running(["sleep", "30"]):
        locks.release_lock("k", "a")
        assert not StepLocks(tmp_path).is_locked("k")


def test_keys_with_odd_characters_get_distinct_files(tmp_path):
    locks = StepLocks(tmp_path)
    assert locks.acquire_lock("a/b", "x")
    assert locks.acquire_lock("a_b", "y", acquire_timeout=0)  # not the same file as a/b
    assert len(list(tmp_path.glob("*.lock"))) == 2


def test_hold_timeout_is_refused(tmp_path):
    with pytest.raises(ValueError, match="hold_timeout is not supported"):
        StepLocks(tmp_path).acquire_lock("k", "a", hold_timeout=5)
