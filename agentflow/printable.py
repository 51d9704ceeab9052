"""Text from agents, commands and inputs as a person sees it on a terminal: data, never layout.

A summary, a command's output or an input can hold anything: an escape sequence that clears
the screen or sets the window's title (ESC, CSI, OSC), a bare carriage return that rewrites
the line, a newline followed by what looks like another log line. Everything agentflow
prints for a person goes through `printable` (control characters shown as `\\xNN`), and
what stands for one line through `one_line` (line breaks shown as `\\n`, so nothing can
start a line of its own). `--json` output is JSON, where the encoder escapes them already.
"""

from __future__ import annotations

import re

# C0 controls but tab and newline, DEL, C1 controls (0x9b is a one-byte CSI), and the
# Unicode line and paragraph separators some terminals and viewers break lines at.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def printable(text: object) -> str:
    """`text` with every control character but tab and newline shown as `\\xNN` (`\\uNNNN`)."""
    return _CONTROL.sub(_shown, str(text))


def one_line(text: object) -> str:
    """`printable(text)` on one line: newlines shown as `\\n`, tabs as a space."""
    return printable(text).replace("\n", "\\n").replace("\t", " ")


def _shown(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def counted(number: int, noun: str) -> str:
    """`1 step`, `2 steps`: a count as a person writes it (a regular plural)."""
    return f"{number} {noun}{'' if number == 1 else 's'}"
