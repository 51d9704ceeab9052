"""The Jinja2 environment templates render in: sandboxed, and bounded in size and time.

Jinja's immutable sandbox already keeps templates away from Python internals and from
mutating values. This adds bounds, because what templates work on comes from inputs:

- `**` and `*` are intercepted and refuse a result over `MAX_OUTPUT` characters (or a
  number over `MAX_DIGITS` digits) before computing it: `10 ** (10 ** 10)` fails at once.
- `range` gives at most `MAX_RANGE` numbers; `center`, `indent`, `wordwrap`, `truncate` and
  `format` refuse widths over `MAX_OUTPUT`.
- `render` stops once the output passes `MAX_OUTPUT` characters, and a template with
  statements (`{% for %}`, macros) is interrupted after `TIME_LIMIT_S` seconds.
"""

from __future__ import annotations

import ctypes
import math
import re
import threading
from collections.abc import Callable
from typing import Any

from jinja2 import StrictUndefined
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_OUTPUT = 1_000_000  # characters in any rendered value
MAX_DIGITS = 10_000  # digits of a number a template computes
MAX_RANGE = 10_000
TIME_LIMIT_S = 5.0
_WIDTH = re.compile(r"%[-+ #0]*(\d+)")


class TemplateTimeout(Exception):
    """Raised inside the rendering thread when a template runs out of time."""


def _digits(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int):
        return 0.0
    return value.bit_length() * 0.30103


def _size(value: Any) -> int | None:
    return len(value) if isinstance(value, (str, list, tuple)) else None


def _power(base: Any, exponent: Any) -> Any:
    if isinstance(base, int) and isinstance(exponent, int) and not isinstance(exponent, bool) and exponent > 0:
        if max(_digits(base), 0.30103) * exponent > MAX_DIGITS and abs(base) > 1:
            raise SecurityError(f"`{_short(base)} ** {exponent}` would have more than {MAX_DIGITS} digits")
    if isinstance(base, float) or isinstance(exponent, float):
        try:
            return math.pow(base, exponent)
        except (OverflowError, ValueError) as exc:
            raise SecurityError(f"`{_short(base)} ** {_short(exponent)}`: {exc}") from None
    return base ** exponent


def _times(left: Any, right: Any) -> Any:
    for sequence, count in ((left, right), (right, left)):
        length = _size(sequence)
        if length is not None and isinstance(count, int) and length * max(count, 0) > MAX_OUTPUT:
            raise SecurityError(f"repeating a value of length {length} {count} times exceeds "
                                f"{MAX_OUTPUT:,} characters")
    if _digits(left) + _digits(right) > MAX_DIGITS:
        raise SecurityError(f"the product would have more than {MAX_DIGITS} digits")
    return left * right


def _range(*args: int) -> range:
    numbers = range(*args)
    if len(numbers) > MAX_RANGE:
        raise SecurityError(f"range() of {len(numbers):,} numbers; at most {MAX_RANGE:,}")
    return numbers


def _bounded(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    """A width-taking filter that refuses widths over MAX_OUTPUT."""
    def check(value: Any, *args: Any, **kwargs: Any) -> Any:
        numbers = [a for a in (*args, *kwargs.values()) if isinstance(a, int) and not isinstance(a, bool)]
        if name == "format" and isinstance(value, str):
            numbers += [int(w) for w in _WIDTH.findall(value)]
        if any(abs(n) > MAX_OUTPUT for n in numbers):
            raise SecurityError(f"|{name} with a width over {MAX_OUTPUT:,}")
        return original(value, *args, **kwargs)

    check.__name__ = original.__name__
    return check


class BoundedSandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"**", "*"})

    def __init__(self) -> None:
        super().__init__(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
        self.globals["range"] = _range
        self.globals.pop("namespace", None)  # mutable state across loop iterations
        for name in ("center", "indent", "wordwrap", "truncate", "format"):
            self.filters[name] = _bounded(name, self.filters[name])

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            return _power(left, right)
        if operator == "*":
            return _times(left, right)
        return super().call_binop(context, operator, left, right)


def join_bounded(chunks: Any) -> str:
    """Join a template's output as it is generated, stopping past MAX_OUTPUT characters."""
    out: list[str] = []
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > MAX_OUTPUT:
            raise SecurityError(f"the rendered text exceeds {MAX_OUTPUT:,} characters")
        out.append(chunk)
    return "".join(out)


def within_time(render: Callable[[], Any]) -> Any:
    """Run `render` in this thread, interrupting it with TemplateTimeout after TIME_LIMIT_S.

    The interruption is an exception set on this thread (it lands between two bytecodes of
    the template's loop); one long C operation cannot be interrupted, which is why the
    operators and filters that could start one are bounded above.
    """
    thread_id = threading.get_ident()
    guard = threading.Lock()
    done = False

    def interrupt() -> None:
        with guard:
            if not done:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(TemplateTimeout))

    timer = threading.Timer(TIME_LIMIT_S, interrupt)
    timer.daemon = True
    timer.start()
    try:
        return render()
    finally:
        with guard:
            done = True
            timer.cancel()
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), None)  # one set too late


def _short(value: Any) -> str:
    text = str(value) if not isinstance(value, int) or value.bit_length() < 200 else f"<{int(_digits(value))} digits>"
    return text if len(text) <= 40 else text[:37] + "..."
