"""Local stand-ins for the earlier engine's agents, until the Claude Code and LLM backends land.

Each does real, modest work on the repository (reads files, times code, calls an endpoint
if one is configured) and says in its summary that it is a stand-in. A later version makes
them the fallbacks of real agents. Free text follows the agent format: `## Summary`,
`Created:`/`Modified:` lines and `## Metrics`.
"""

from __future__ import annotations

import glob
import re
import statistics
import time
import urllib.error
import urllib.request
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from agentflow.tasks.builtin import tracked_files

# Bangladesh VAT and Supplementary Duty Act 2012: standard rate and the reduced rates.
BD_VAT_RATES = {Decimal("15"), Decimal("10"), Decimal("7.5"), Decimal("5"), Decimal("0")}
_RATE_NEAR_VAT = re.compile(r"(?i)vat[^\n]{0,40}?(\d{1,2}(?:\.\d+)?)\s*%|(\d{1,2}(?:\.\d+)?)\s*%[^\n]{0,40}?vat")
_SYMBOL = re.compile(r"^\s*(?:export\s+)?(?:async\s+)?(?:def|class|function|interface|type)\s+(\w+)", re.M)


def _matching(files: list[str]) -> list[Path]:
    found: dict[str, Path] = {}
    for pattern in files:
        for name in glob.glob(pattern, recursive=True):
            path = Path(name)
            if path.is_file():
                found[str(path)] = path
    return [found[k] for k in sorted(found)]


def _report(summary: str, body: list[str], metrics: dict[str, Any]) -> str:
    lines = ["## Summary", summary, "", *body, "", "## Metrics"]
    lines += [f"- {key}: {value}" for key, value in metrics.items()]
    return "\n".join(lines) + "\n"


def business_logic_validator(prompt: str = "", files: list[str] | None = None) -> str:
    """Check VAT rates written next to the word VAT against Bangladesh's legal rates."""
    paths = _matching(files or [])
    findings = []
    for path in paths:
        text = path.read_text(encoding="utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), start=1):
            for match in _RATE_NEAR_VAT.finditer(line):
                rate = Decimal(match.group(1) or match.group(2))
                if rate not in BD_VAT_RATES:
                    findings.append(f"- {path}:{number}: VAT rate {rate}% is not a Bangladesh VAT rate")
    verdict = "no invalid VAT rates" if not findings else f"{len(findings)} invalid VAT rates"
    scope = f"{len(paths)} files" if paths else "no files matched (set `files:` globs)"
    return _report(f"Stand-in VAT rule check: {verdict} in {scope}", findings,
                   {"files_read": len(paths), "findings": len(findings)})


def context_gathering(prompt: str = "", files: list[str] | None = None, repo: str = ".") -> str:
    """Collect the module's files, sizes and top-level symbols as context for later steps."""
    paths = _matching(files or []) or [Path(repo) / name for name in tracked_files(repo)[:200]]
    symbols: list[str] = []
    lines = 0
    for path in paths:
        text = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
        lines += text.count("\n")
        symbols += [f"{path}:{name}" for name in _SYMBOL.findall(text)[:5]]
    body = [f"- {s}" for s in symbols[:30]]
    return _report(f"Stand-in context: {len(paths)} files, {lines} lines, {len(symbols)} symbols", body,
                   {"files_read": len(paths), "lines": lines, "symbols": len(symbols)})


def code_reviewer(prompt: str = "", files: list[str] | None = None, max_line: int = 120) -> str:
    """Review heuristics: over-long lines, TODO/FIXME markers, very long files."""
    paths = _matching(files or [])
    findings = []
    for path in paths:
        text = path.read_text(encoding="utf-8", errors="replace")
        rows = text.splitlines()
        long_lines = sum(1 for row in rows if len(row) > max_line)
        markers = len(re.findall(r"\b(TODO|FIXME)\b", text))
        if long_lines:
            findings.append(f"- {path}: {long_lines} lines over {max_line} characters")
        if markers:
            findings.append(f"- {path}: {markers} TODO/FIXME markers")
        if len(rows) > 800:
            findings.append(f"- {path}: {len(rows)} lines; consider splitting it")
    focus = prompt.strip().splitlines()[0][:80] if prompt.strip() else "general review"
    return _report(f"Stand-in review ({focus}): {len(findings)} findings in {len(paths)} files", findings,
                   {"files_read": len(paths), "findings": len(findings)})


def api_integration_tester(item: str = "", urls: dict[str, str] | None = None, repo: str = ".",
                           timeout_s: float = 10.0) -> dict[str, Any]:
    """Health-check one gateway: GET its configured URL, and find the code that integrates it."""
    mentions = 0
    needle = str(item).lower()
    for name in tracked_files(repo):
        path = Path(repo) / name
        try:
            if path.stat().st_size < 1_000_000 and needle in path.read_text(errors="replace").lower():
                mentions += 1
        except OSError:
            continue
    url = (urls or {}).get(str(item))
    if not url:
        return {"summary": f"Stand-in check of {item}: no endpoint configured; {mentions} files mention it",
                "gateway": item, "reachable": None, "files_mentioning": mentions}
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 (user-configured URL)
            code = response.status
    except urllib.error.HTTPError as exc:
        code = exc.code
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise RuntimeError(f"{item} at {url} is unreachable: {exc}") from exc
    elapsed = round((time.monotonic() - started) * 1000, 1)
    if code >= 500:
        raise RuntimeError(f"{item} at {url} answered HTTP {code}")
    return {"summary": f"{item}: HTTP {code} in {elapsed} ms", "gateway": item, "reachable": True,
            "status_code": code, "latency_ms": elapsed, "files_mentioning": mentions}


def _invoice_naive(lines: list[tuple[str, int, str]]) -> str:
    total = Decimal("0")
    for _name, quantity, price in lines:
        net = Decimal(price) * quantity
        vat = (net * Decimal("15") / Decimal("100")).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
        total += net + vat
    return f"{total:.2f}"


_RATE = Decimal("0.15")
_CENT = Decimal("0.01")


def _invoice_cached(lines: list[tuple[str, int, str]]) -> str:
    prices: dict[str, Decimal] = {}
    net_total = Decimal("0")
    vat_total = Decimal("0")
    for _name, quantity, price in lines:
        unit = prices.get(price) or prices.setdefault(price, Decimal(price))
        net = unit * quantity
        net_total += net
        vat_total += (net * _RATE).quantize(_CENT, rounding=ROUND_HALF_UP)
    return f"{net_total + vat_total:.2f}"


def _invoice_integer(lines: list[tuple[str, int, str]]) -> str:
    total_paisa = 0
    for _name, quantity, price in lines:
        net = int(price.replace(".", "")) * quantity  # prices carry two decimals
        total_paisa += net + (net * 15 + 50) // 100
    return f"{total_paisa // 100}.{total_paisa % 100:02d}"


_STRATEGIES = [_invoice_naive, _invoice_cached, _invoice_integer]


def performance_profiler(iteration: int | None = None, invoices: int = 200, lines_per_invoice: int = 20,
                         samples: int = 15) -> dict[str, Any]:
    """Time real invoice generation (VAT included); each round tries the next implementation."""
    round_ = iteration or 1
    strategy = _STRATEGIES[min(round_, len(_STRATEGIES)) - 1]
    batch = [[(f"item{j}", 1 + j % 5, f"{100 + (i * j) % 900}.{j % 100:02d}") for j in range(lines_per_invoice)]
             for i in range(invoices)]
    expected = [_invoice_naive(lines) for lines in batch[:5]]
    if [strategy(lines) for lines in batch[:5]] != expected:
        raise RuntimeError(f"{strategy.__name__} computes different totals than the reference")
    timings = []
    for _ in range(samples):
        started = time.perf_counter()
        for lines in batch:
            strategy(lines)
        timings.append((time.perf_counter() - started) * 1000)
    p95 = statistics.quantiles(timings, n=20)[-1] if len(timings) >= 2 else timings[0]
    return {
        "summary": f"Stand-in profile, round {round_} ({strategy.__name__.lstrip('_')}): "
                   f"p95 {p95:.1f} ms for {invoices} invoices",
        "metrics": {"p95_ms": round(p95, 2), "p50_ms": round(statistics.median(timings), 2),
                    "invoices": invoices, "strategy": strategy.__name__.lstrip("_")},
    }


def write_tests(module: str, tests: str = "tests", prompt: str = "") -> str:
    """Offline stand-in for test-writer: a real, modest test of `module` that needs no model:
    it parses the module and checks that the names it defines today are still defined (a
    guard against a rename or a deletion), runnable with plain `python` (unittest)."""
    import ast

    source = Path(module).read_text(encoding="utf-8")
    names = sorted(node.name for node in ast.parse(source).body
                   if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                   and not node.name.startswith("_"))
    stem = Path(module).stem
    target = Path(tests) / f"test_{stem}_agentflow.py"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(f'''"""{stem}: the names it defines (written by agentflow's test-writer stand-in)."""

import ast
import unittest
from pathlib import Path

MODULE = Path(__file__).resolve().parent.parent / {module!r}
NAMES = {names!r}


class {stem.title().replace("_", "")}Names(unittest.TestCase):
    def test_it_parses_and_defines_its_names(self):
        tree = ast.parse(MODULE.read_text(encoding="utf-8"))
        defined = {{node.name for node in tree.body if hasattr(node, "name")}}
        self.assertTrue(set(NAMES) <= defined, sorted(set(NAMES) - defined))


if __name__ == "__main__":
    unittest.main()
''', encoding="utf-8")
    return _report(f"wrote {target} for {module} ({len(names)} names) — a stand-in, not a model",
                   [f"Created: {target}"], {"names": len(names)})
