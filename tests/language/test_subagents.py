"""Subagent files (`.claude/agents/NAME.md`) are read like workflows: bounded and checked."""

from __future__ import annotations

import pytest

from agentflow.flows.language.subagents import SubagentError, parse

pytestmark = pytest.mark.unit  # needs no Prefect server: `pytest -m unit`

BOMB = "\n".join(["---", "a: &a [x, x, x, x, x, x, x, x, x, x]"]
                 + [f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
                    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]"
                    for i in range(9)] + ["---", "You review."])


def test_an_alias_bomb_in_the_frontmatter_is_refused_at_once():
    """The billion laughs in a subagent's frontmatter: refused by the loader workflows use,
    naming the file and line (it used to grow to GiBs until the process was killed)."""
    with pytest.raises(SubagentError, match=r"reviewer\.md:\d+: the frontmatter is not valid YAML \(aliases expand"):
        parse("reviewer", ".claude/agents/reviewer.md", BOMB)


def test_a_name_unlike_the_file_or_a_model_that_is_not_a_name_is_refused():
    with pytest.raises(SubagentError, match=r"says `name: other`, but the file is reviewer\.md"):
        parse("reviewer", "r.md", "---\nname: other\n---\nYou review.\n")
    with pytest.raises(SubagentError, match=r"`model` is a model's name"):
        parse("reviewer", "r.md", "---\nname: reviewer\nmodel: [1, 2]\n---\nYou review.\n")
    agent = parse("reviewer", "r.md", "---\nname: reviewer\nmodel: inherit\ntools: Read, Grep\n---\nYou review.\n")
    assert (agent.name, agent.model, agent.tools, agent.prompt) == ("reviewer", None, ["Read", "Grep"], "You review.")
