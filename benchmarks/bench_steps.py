"""Step bodies for the benchmarks: nothing, or a fixed sleep."""

import time


def noop() -> None:
    return None


def sleep1() -> str:
    time.sleep(1)
    return "slept 1 s"
