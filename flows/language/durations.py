"""Durations as the language writes them: `90`, `"30s"`, `"10m"`, `"24h"`, `"7d"`."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
MAX_DURATION_S = 365 * 86400.0  # also keeps `.inf` out of Prefect's timers
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(value: Any) -> float:
    """Seconds from `90`, `"30s"`, `"10m"`, `"24h"`, `"7d"`."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like 30s, 10m, 24h, 7d")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and _DURATION.match(value):
        match = _DURATION.match(value)
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    else:
        raise ValueError("a duration is a number of seconds or a string like 30s, 10m, 24h, 7d")
    if seconds != seconds or seconds < 0:
        raise ValueError("a duration cannot be negative")
    if seconds > MAX_DURATION_S:
        raise ValueError(f"a duration is at most {MAX_DURATION_S // 86400:g} days (write e.g. 10m or 24h)")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
