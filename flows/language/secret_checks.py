"""Where a secret input's value may go, checked when a definition is loaded (language/checks.py).

A secret follows its value through templates. It may reach a secret sink: a command's
environment, an agent's prompt, a child workflow's secret input. Where its rendered value
would be written in clear, it is refused with the fix: in a command's arguments (any user of
the machine reads them in /proc), as a `for_each` item (it names the task run), in an
approval's message or a deployment step's `with:` (stored on the server). A child workflow's
`with:` is checked against the child's inputs (language/children.py).
"""

from __future__ import annotations

from agentflow.errors import TemplateError
from agentflow.flows.language import templates
from agentflow.flows.language.inputs import secret_env

# Template fields whose rendered value is written in clear, and where.
NOT_SECRET_SINKS = {
    "for_each": "a for_each item names its task run (`step[value]`) on the server, in the journal and the live view",
    "approval": "an approval's message is the form's description, stored on the server",
    "message": "an assert's message is the step's summary, shown and stored in clear",
    "deployment": "a deployment's run takes its `with:` as parameters, stored in clear on the server",
}
# Where each sink's fix differs from the general one.
_FIXES = {
    "deployment": "leave it out of `with:`: the deployment's run takes its secret inputs from its worker's "
                  "environment (${variable})",
}


class SecretChecks:
    """The secret checks of `_Checker` (its `add`, `agents` and `secrets`)."""

    def _fields_in_argv(self, step: dict) -> set[str]:
        """The step's fields whose values become a command's arguments: `run`, and the
        `prompt`/`with` a shell agent's command puts in its argv."""
        if isinstance(step.get("run"), list):
            return {"run"}
        agent = self.agents.get(step["agent"]) if isinstance(step.get("agent"), str) else None
        if agent is None or agent.kind != "shell":
            return set()
        names: set[str] = set()
        for arg in agent.command or []:
            try:
                names |= templates.inspect(arg).names if templates.is_template(arg) else set()
            except TemplateError:
                pass  # reported with the agent
        return {"prompt", "with"} & names

    def _secrets_in_template(self, text: str) -> set[str]:
        if not self.secrets or not templates.is_template(text):
            return set()
        try:
            return set(templates.inspect(text).keys.get("inputs", frozenset())) & self.secrets
        except TemplateError:
            return set()  # reported by _check_template

    def _secret_in_plain_text(self, field: str, used: set[str], path: tuple, where: str) -> None:
        """A secret where its value would be written in clear: as a `for_each` item (it names
        the task run, on the server, in the journal and the live view) or in an approval's
        message (the form's description, stored on the server)."""
        for name in sorted(used):
            fix = _FIXES.get(field, "pass it where a secret may go: a command's environment (${variable}), an "
                                    "agent's prompt, a child workflow's secret input")
            self.add(path, where, f"the secret input `{name}` would be written in clear: {NOT_SECRET_SINKS[field]}",
                     fix.replace("{variable}", secret_env(name)))

    def _secret_in_command(self, text: str, path: tuple, where: str) -> None:
        """A secret in a command's arguments (or a shell agent's, which its prompt and `with`
        fill) is readable by every user of the machine: the command reads it from its
        environment instead."""
        if not self.secrets or not templates.is_template(text):
            return
        try:
            used = templates.inspect(text).keys.get("inputs", frozenset()) & self.secrets
        except TemplateError:
            return  # reported by _check_template
        for name in sorted(used):
            variable = secret_env(name)
            self.add(path, where, f"the secret input `{name}` would be in a command's arguments, which every "
                     "user of this machine can read (/proc/PID/cmdline)",
                     f"the command gets it in its environment as ${variable}: e.g. "
                     f"run: [sh, -c, 'tool --token \"${variable}\"']")
