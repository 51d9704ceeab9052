"""Checks of agents (a workflow's `agents:` or an agents file) and of a deployed workflow's
schedules and triggers: the parts of language/checks.py's `_Checker` that do not read steps.
"""

from __future__ import annotations

import difflib

from agentflow.errors import TemplateError
from agentflow.flows.language import templates
from agentflow.flows.language.document import Document
from agentflow.flows.language.spec import AgentSpec


def invalid_agents(agents: dict[str, AgentSpec], *documents: Document | None) -> set[str]:
    """Agents defined but not valid: reported at their definition, not again where they are used."""
    defined: set[str] = set()
    for document in documents:
        raw = document.data.get("agents") if document is not None and isinstance(document.data, dict) else None
        defined |= set(map(str, raw)) if isinstance(raw, dict) else set()
    return defined - set(agents)


class AgentChecks:
    """The agent and deployment checks of `_Checker` (its `add`, `agents`, `inputs` and
    `invalid_agents`)."""

    def _unknown_agent(self, name: str, path: tuple, where: str,
                       document: Document | None = None, source: str | None = None) -> None:
        if name in self.invalid_agents:
            return
        defined = sorted(self.agents)
        close = difflib.get_close_matches(name, defined, n=1, cutoff=0.6)
        fix = (f"did you mean `{close[0]}`?" if close else
               f"defined: {', '.join(defined) or 'none'}; add it to the agents file or under `agents:`")
        self.add(path, where, f"agent `{name}` is not defined", fix, document=document, source=source)

    # ---- agents file ----------------------------------------------------------------------
    def check_agents(self, agents: dict[str, AgentSpec], source: str, document: Document) -> None:
        base = ("agents",)  # the same path inline and in an agents file
        for name, agent in agents.items():
            if agent.fallback and agent.fallback not in agents:
                self._unknown_agent(agent.fallback, base + (name, "fallback"), f"agents.{name}.fallback",
                                    document, source)
            for position, arg in enumerate(agent.command or []):
                path = base + (name, "command", position)
                if not templates.is_template(arg):
                    continue
                try:
                    info = templates.inspect(arg)
                except TemplateError as exc:
                    self.add(path, f"agents.{name}.command", str(exc), "close every {{ and {%",
                             document=document, source=source)
                    continue
                unknown = info.names - {"prompt", "inputs", "item", "with", "files", "step"}
                for bad in sorted(unknown):
                    self.add(path, f"agents.{name}.command", f"template refers to unknown name `{bad}`",
                             "use prompt, inputs, item, with, files or step", document=document, source=source)

    # ---- schedules and triggers -----------------------------------------------------------
    def check_deployment(self, data: dict, raw_inputs: dict) -> None:
        """The inputs a schedule or a trigger gives are the workflow's, and every input without
        a default is given (a secret comes from the worker's environment): else each run it
        starts would be refused."""
        required = [str(name) for name, spec in raw_inputs.items()
                    if isinstance(spec, dict) and "default" not in spec and spec.get("secret") is not True]
        for key, what in (("schedules", "schedule"), ("triggers", "trigger")):
            entries = data.get(key)
            for index, entry in enumerate(entries if isinstance(entries, list) else []):
                if not isinstance(entry, dict):
                    continue
                given = entry.get("inputs") if isinstance(entry.get("inputs"), dict) else {}
                for name in given:
                    if str(name) not in self.inputs:
                        self.add((key, index, "inputs", name), f"{what} {index + 1}",
                                 f"`{name}` is not an input of this workflow",
                                 f"declare it under inputs:, or use one of: {', '.join(sorted(self.inputs)) or '(none)'}")
                missing = [name for name in required if name not in given]
                if missing:
                    self.add((key, index), f"{what} {index + 1}",
                             f"gives no value for required input(s) {', '.join(missing)}: each run it starts "
                             "would be refused", "give them under its inputs:, or a default to the input")
