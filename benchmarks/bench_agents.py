"""B6: the orchestration cost of a real agent step, and the ladder's reaction time.

A claude-code step against a local stub of the Messages API (tests/fixtures/model_stubs.py),
timed as agentflow runs it (task run, cache lookup, journal, SDK start, the CLI's answer)
and as a plain script calling the SDK directly, interleaved round by round; and the time
from the primary's failure (an HTTP 529) to the fallback's answer. Needs the claude extra.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "fixtures"))


def _environment(url: str) -> None:
    os.environ.update(ANTHROPIC_BASE_URL=url, ANTHROPIC_API_KEY="dummy-key-for-the-stub",
                      CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1", CLAUDE_CODE_MAX_RETRIES="1",
                      HOME=tempfile.mkdtemp(prefix="agentflow-b6-home-"))


def _direct(cwd: str) -> float:
    """One call the way a plain script makes it: query() and read the stream to the end."""
    from claude_agent_sdk import ClaudeAgentOptions, ResultMessage, query

    async def call() -> None:
        options = ClaudeAgentOptions(cwd=cwd, permission_mode="dontAsk", setting_sources=[],
                                     system_prompt={"type": "preset", "preset": "claude_code"})
        async for message in query(prompt="Check the VAT rule", options=options):
            if isinstance(message, ResultMessage):
                assert not message.is_error

    started = time.perf_counter()
    asyncio.run(call())
    return time.perf_counter() - started


def b6(rounds: int) -> dict | None:
    try:
        import claude_agent_sdk  # noqa: F401
    except ImportError:
        return None
    from model_stubs import AnthropicStub

    from agentflow import build_flow
    from agentflow.events import listening
    from agentflow.flows.language.loader import load_text

    workdir = tempfile.mkdtemp(prefix="agentflow-b6-")
    os.chdir(workdir)
    answer = AnthropicStub([{"text": "## Summary\nThe VAT rule holds."}]).start()
    failing = AnthropicStub([{"status": 529}]).start()
    try:
        _environment(answer.url)
        step_flow = build_flow(load_text(
            "name: b6-step\ninputs:\n  nonce: {default: ''}\nagents:\n"
            "  reviewer: {kind: claude-code, setting_sources: [], circuit_breaker: false}\n"
            "steps:\n  - {id: review, agent: reviewer, prompt: 'Check the VAT rule', cache: false}\n"))
        ladder_flow = build_flow(load_text(
            "name: b6-ladder\nagents:\n"
            "  primary: {kind: claude-code, setting_sources: [], circuit_breaker: false, fallback: local}\n"
            "  local: {kind: python, callable: 'bench_steps:noop'}\n"
            "steps:\n  - {id: review, agent: primary, prompt: 'Check', cache: false}\n"))
        direct, ours, ours_flow, to_fallback, failure_to_answer = [], [], [], [], []
        _direct(workdir)  # warm: the CLI binary's first start reads it from disk
        for _ in range(rounds):
            direct.append(_direct(workdir))
            marks: dict[str, float] = {}
            with listening(lambda e: marks.setdefault(f"{e.kind}:{e.label}", time.perf_counter())):
                started = time.perf_counter()
                step_flow(return_state=True)
                ours_flow.append(time.perf_counter() - started)
            ours.append(marks["finished:review"] - marks["started:review"])
            os.environ["ANTHROPIC_BASE_URL"] = failing.url
            marks = {}
            with listening(lambda e: marks.setdefault(f"{e.kind}:{e.label}", time.perf_counter())):
                ladder_flow(return_state=True)
            os.environ["ANTHROPIC_BASE_URL"] = answer.url
            fallback = "finished:review (fallback local)"
            to_fallback.append(marks[fallback] - marks["started:review"])
            failure_to_answer.append(marks[fallback] - marks["finished:review"])
    finally:
        answer.stop()
        failing.stop()
        os.chdir(ROOT)
    median = statistics.median
    return {"direct_ms": median(direct) * 1000, "ours_ms": median(ours) * 1000,
            "ours_flow_ms": median(ours_flow) * 1000, "to_fallback_ms": median(to_fallback) * 1000,
            "failure_to_answer_ms": median(failure_to_answer) * 1000,
            "direct_all": direct, "ours_all": ours}


if __name__ == "__main__":
    result = b6(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
    print(result if result is not None else "B6 needs the claude extra: pip install -e '.[claude]'")
