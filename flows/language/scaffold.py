"""`agentflow new`: a workflow to start from, in one of the orchestration patterns, and its test.

The workflow is valid and runs offline as written: its agent is a shell stand-in that echoes
what it is asked (a comment says how to make it a Claude Code subagent). The test file holds
one passing case. `select_pattern` picks the pattern from a task's description by its words,
as the earlier engine's `select_pattern` did; no model is asked.
"""

from __future__ import annotations

import re

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
PATTERNS = ("sequential", "parallel", "dag", "fan-out", "iterative", "approval")

# In order: the first pattern whose words the description holds wins.
_WORDS = [
    ("approval", ("approve", "approval", "sign off", "sign-off", "a person", "human", "confirm", "review before")),
    ("iterative", ("until", "repeat", "iterate", "again and again", "loop", "rounds", "keep trying")),
    ("fan-out", ("each", "every", "per file", "for all", "batch", "one by one")),
    ("parallel", ("in parallel", "at the same time", "concurrently", "simultaneous", "side by side")),
    ("dag", ("after", "depends", "pipeline", "once", "then", "stages")),
]

_HEAD = """# yaml-language-server: $schema=workflow.schema.json
#
# {name}: {what}
# Run it:   agentflow run {path}
# Test it:  agentflow test {test_path}    (offline: the test answers the agent)
name: {name}
description: {description}
{pattern_line}inputs:
  task: {{type: string, default: "describe the task here"}}
{extra_inputs}defaults:
  retries: 1
  timeout: 10m
agents:
  # A stand-in that answers offline. For a Claude Code subagent instead:
  #   assistant: {{kind: claude-code, subagent: assistant, fallback: assistant-local}}
  # with .claude/agents/assistant.md in the repository, and this stand-in renamed assistant-local.
  assistant:
    kind: shell
    # It answers the prompt's first line; its score is the round (`round N` in the prompt), else 1.
    command: [sh, -c, 'line=$(head -n 1); n=$(printf "%s" "$line" | sed -n "s/.*round \\([0-9]*\\).*/\\1/p");
      printf "## Summary\\nassistant: %s\\n\\n## Metrics\\n- score: %s\\n" "$line" "${{n:-1}}"']
steps:
"""

_STEPS = {
    "sequential": """  - id: gather
    run: [echo, "context for {{ inputs.task }}"]
  - id: answer
    agent: assistant
    prompt: "{{ inputs.task }} (context: {{ steps.gather.summary }})"
""",
    "parallel": """  - id: review
    agent: assistant
    prompt: "Review: {{ inputs.task }}"
  - id: summarise
    agent: assistant
    prompt: "Summarise: {{ inputs.task }}"
""",
    "dag": """  - id: plan
    agent: assistant
    prompt: "Plan: {{ inputs.task }}"
  - id: implement
    agent: assistant
    prompt: "Implement this plan: {{ steps.plan.summary }}"
  - id: document
    agent: assistant
    prompt: "Document this plan: {{ steps.plan.summary }}"
  - id: both_done
    depends_on: [implement, document]
    assert: "steps.implement.status == 'success' and steps.document.status == 'success'"
    message: "the plan was implemented and documented"
""",
    "fan-out": """  - id: each
    agent: assistant
    for_each: inputs.items
    max_parallel: 3
    prompt: "{{ inputs.task }}: {{ item }}"
""",
    "iterative": """  - id: improve
    agent: assistant
    prompt: "{{ inputs.task }} (round {{ iteration }}); report a score under ## Metrics"
    repeat: {until: "result.metrics.score >= 3", max: 5}
""",
    "approval": """  - id: draft
    agent: assistant
    prompt: "Draft: {{ inputs.task }}"
  - id: approve
    approval:
      message: "Go ahead with **{{ steps.draft.summary }}**?"
      show: [draft]
  - id: publish
    depends_on: [approve]
    run: [echo, "published: {{ steps.draft.summary }}"]
""",
}

_PATTERN_LINE = {"sequential": "pattern: sequential\n", "parallel": "pattern: parallel\n", "dag": "pattern: dag\n",
                 "fan-out": "", "iterative": "", "approval": ""}
_EXTRA_INPUTS = {"fan-out": '  items: {type: array, default: ["first", "second", "third"]}\n'}
_WHAT = {"sequential": "steps one after another, each reading the ones before",
         "parallel": "independent steps at the same time",
         "dag": "steps that wait for the steps they name (depends_on, or by reading their results)",
         "fan-out": "one step over many items, a task run per item, in parallel",
         "iterative": "a step repeated until its result is good enough",
         "approval": "a draft, a person's approval, then the action"}

_CASE = {
    "iterative": """    agents:
      assistant:                # answers in turn, one per round
        - {summary: "first try", metrics: {score: 1}}
        - {summary: "good enough", metrics: {score: 3}}
    expect:
      status: completed
      steps:
        improve: {status: success, summary: "good enough"}
""",
    "approval": """    agents:
      assistant: {summary: "a draft"}
    approvals:
      approve: {approve: true, comment: "go ahead"}
    expect:
      status: completed
      steps:
        approve: {status: success, data: {approved: true}}
        publish: {status: success, summary: "published: a draft"}
""",
}


def select_pattern(description: str) -> tuple[str, str]:
    """The pattern a task's description calls for, and why (the words that chose it)."""
    text = f" {description.lower()} "
    for pattern, words in _WORDS:
        found = [w for w in words if re.search(rf"\b{re.escape(w)}\b", text)]
        if found:
            return pattern, f"the description says {', '.join(repr(w) for w in found[:3])}"
    return "sequential", "no word of the description asks for another pattern"


def workflow_text(name: str, pattern: str, description: str, path: str, test_path: str) -> str:
    head = _HEAD.format(name=name, what=_WHAT[pattern], path=path, test_path=test_path,
                        description=_quoted(description or f"A {pattern} workflow."),
                        pattern_line=_PATTERN_LINE[pattern], extra_inputs=_EXTRA_INPUTS.get(pattern, ""))
    return head + _STEPS[pattern]


def tests_text(name: str, pattern: str) -> str:
    case = _CASE.get(pattern, """    agents:
      assistant: {summary: "done"}
    expect:
      status: completed
""")
    return (f"# The tests of {name}.yaml: `agentflow test {name}.test.yaml` (offline: no agent is called).\n"
            f"workflow: {name}.yaml\ncases:\n  - name: the assistant answers\n    inputs: {{task: \"a first task\"}}\n"
            + case)


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ") + '"'
