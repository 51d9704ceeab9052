"""Cross-reference checks of a definition: step ids, agents, templates, expressions, cycles.

They read the raw YAML data (not the validated model) so that they still run, and still
report, when the file also has structural errors: `validate` shows everything at once.
"""

from __future__ import annotations

import difflib
from typing import Any

from agentflow.errors import ExpressionError, Problem, TemplateError, format_path
from agentflow.flows.language import callables, expressions, graph, templates
from agentflow.flows.language.agent_checks import AgentChecks, invalid_agents
from agentflow.flows.language.secret_checks import NOT_SECRET_SINKS, SecretChecks
from agentflow.flows.language.document import Document
from agentflow.flows.language.spec import BLOCK_PREFIX, RESULT_FIELDS, RUNNABLE_AGENT_KINDS, AgentSpec

_EXPRESSION_ROOTS = {
    "when": ("inputs", "steps", "item"),
    "until": ("inputs", "steps", "result", "iteration"),
    "gate": ("inputs", "steps", "result", "item", "iteration"),
    "approve_if": ("inputs", "steps", "result"),
    "review_if": ("inputs", "steps", "result"),
    "assert": ("inputs", "steps"),
    "for_each": ("inputs", "steps"),
}
_UNSUPPORTED_STEPS: dict[str, str] = {}  # step kinds parsed but not run (none today)


def check_workflow(document: Document, source: str, agents: dict[str, AgentSpec],
                   agents_source: str, agents_doc: Document | None
                   ) -> tuple[list[Problem], dict[str, list[str]]]:
    """Every cross-reference problem, and the step graph those references make.

    The graph is computed here once, for the cycle check, and kept by the loader so that the
    compiler, `graph` and `plan` use exactly the dependencies that were checked."""
    data = document.data
    raw_steps = data.get("steps") if isinstance(data.get("steps"), list) else []
    raw_inputs = data.get("inputs") if isinstance(data.get("inputs"), dict) else {}
    checker = _Checker(document, source, agents, set(map(str, raw_inputs)))
    checker.secrets = {str(name) for name, spec in raw_inputs.items()
                       if isinstance(spec, dict) and spec.get("secret") is True}
    checker.invalid_agents = invalid_agents(agents, document, agents_doc)
    checker.collect_ids(raw_steps)
    for index, step in enumerate(raw_steps):
        if isinstance(step, dict):
            checker.check_step(index, step)
    if agents_doc is not None:
        checker.check_agents(agents, agents_source, agents_doc)
    checker.check_deployment(data, raw_inputs)
    deps = checker.check_cycle(data.get("pattern", "sequential"))
    return checker.problems, deps


def check_agents_file(agents: dict[str, AgentSpec], source: str, document: Document) -> list[Problem]:
    """Checks of an agents file on its own (fallbacks defined, command templates valid)."""
    checker = _Checker(document, source, agents, set())
    checker.check_agents(agents, source, document)
    return checker.problems


class _Checker(AgentChecks, SecretChecks):
    def __init__(self, document: Document, source: str, agents: dict[str, AgentSpec], inputs: set[str]):
        self.document = document
        self.source = source
        self.agents = agents
        self.inputs = inputs
        self.problems: list[Problem] = []
        self.ids: list[str] = []
        self.known: set[str] = set()  # the ids, to look up: a list's `in` made 20 000 steps quadratic
        self.explicit: dict[str, list[str]] = {}
        self.referenced: dict[str, set[str]] = {}
        self.edges: dict[tuple[str, str], tuple[tuple, str]] = {}  # (step, upstream) -> (path, how)
        self.secrets: set[str] = set()  # secret inputs
        self.invalid_agents: set[str] = set()  # defined, with problems of their own

    def add(self, path: tuple, where: str, what: str, fix: str = "", got: str | None = None,
            document: Document | None = None, source: str | None = None) -> None:
        doc = document or self.document
        self.problems.append(Problem(source or self.source, doc.line_of(path), where, what, fix, got))

    # ---- step ids -------------------------------------------------------------------------
    def collect_ids(self, raw_steps: list) -> None:
        first_line: dict[str, int | None] = {}
        for index, step in enumerate(raw_steps):
            step_id = step.get("id") if isinstance(step, dict) else None
            if not isinstance(step_id, str):
                continue
            path = ("steps", index, "id")
            if step_id in first_line:
                self.add(path, f"steps[{index}].id", f"duplicate step id `{step_id}` "
                         f"(first used at line {first_line[step_id]})", "give each step its own id")
                continue
            first_line[step_id] = self.document.line_of(path)
            self.ids.append(step_id)
            self.known.add(step_id)

    def _unknown_step(self, name: str, path: tuple, where: str, how: str) -> None:
        close = difflib.get_close_matches(name, self.ids, n=1, cutoff=0.6)
        fix = f"did you mean `{close[0]}`?" if close else f"steps are: {', '.join(self.ids) or 'none'}"
        self.add(path, where, f"{how} unknown step `{name}`", fix)

    # ---- one step -------------------------------------------------------------------------
    def check_step(self, index: int, step: dict) -> None:
        step_id = step.get("id") if isinstance(step.get("id"), str) else f"#{index}"
        base = ("steps", index)
        prefix = f"steps[{index}]"
        self.referenced.setdefault(step_id, set())

        depends = step.get("depends_on")
        if isinstance(depends, list):
            self.explicit[step_id] = [d for d in depends if isinstance(d, str)]
            for position, name in enumerate(depends):
                path = base + ("depends_on", position)
                if name == step_id:
                    self.add(path, f"{prefix}.depends_on", f"step `{step_id}` depends on itself",
                             "remove it from its own depends_on")
                elif isinstance(name, str) and name not in self.known:
                    self._unknown_step(name, path, f"{prefix}.depends_on", "depends on")
                elif isinstance(name, str):
                    self.edges.setdefault((step_id, name), (path, "{step} depends on {upstream}"))

        approval = step.get("approval")
        shown = approval.get("show") if isinstance(approval, dict) else None
        if isinstance(shown, list):  # the results shown above the form: the step waits for them
            self.explicit[step_id] = self.explicit.get(step_id, []) + [s for s in shown if isinstance(s, str)]
            for position, name in enumerate(shown):
                path = base + ("approval", "show", position)
                if isinstance(name, str) and name not in self.known:
                    self._unknown_step(name, path, f"{prefix}.approval.show", "shows")
                elif isinstance(name, str) and name != step_id:
                    self.edges.setdefault((step_id, name), (path, "{step} shows {upstream}"))

        has_items = step.get("for_each") is not None
        has_iteration = step.get("repeat") is not None
        in_argv = self._fields_in_argv(step)
        for field, value, path in self._template_fields(step, base):
            self._check_template(step_id, value, path, format_path(path), has_items, has_iteration)
            if field in in_argv:
                self._secret_in_command(value, path, format_path(path))
            elif field in NOT_SECRET_SINKS:
                self._secret_in_plain_text(field, self._secrets_in_template(value), path, format_path(path))
            elif field == "with" and step.get("deployment") is not None:
                self._secret_in_plain_text("deployment", self._secrets_in_template(value), path, format_path(path))
        if isinstance(step.get("for_each"), str):  # an expression: its items name task runs too
            path = base + ("for_each",)
            try:
                used = set(expressions.parse(step["for_each"], roots=("inputs", "steps")).references("inputs"))
            except ExpressionError:
                used = set()  # reported with the expression
            self._secret_in_plain_text("for_each", used & self.secrets, path, format_path(path))

        template = step.get("template")
        if isinstance(template, dict):  # its text (read from `source` by the loader) and `dest`, with its vars
            names = set(template["vars"]) if isinstance(template.get("vars"), dict) else set()
            for field in ("inline", "dest"):
                if isinstance(template.get(field), str):
                    path = base + ("template", field)
                    from_file = field == "inline" and isinstance(template.get("source"), str)
                    where = (f"{format_path(base + ('template', 'source'))} ({template['source']})" if from_file
                             else format_path(path))
                    self._check_template(step_id, template[field], path, where, has_items, has_iteration, names)

        # What undoes the step is rendered with the step's result as `result`: checked now,
        # not when the undo runs (a typo there fails the undo, after the run has failed).
        compensate = step.get("compensate")
        if isinstance(compensate, dict):
            for field, text, path in self._compensate_fields(compensate, base + ("compensate",)):
                self._check_template(step_id, text, path, format_path(path), has_items, has_iteration, {"result"})
                if field == "run":
                    self._secret_in_command(text, path, format_path(path))

        for field, text, path in self._expression_fields(step, base):
            roots = _EXPRESSION_ROOTS[field]
            self._check_expression(step_id, text, path, format_path(path), roots, has_items)

        self._check_kind(step, base, prefix)

    def _template_fields(self, step: dict, base: tuple):
        for field in ("prompt", "message", "workflow", "approval"):
            if isinstance(step.get(field), str):
                yield field, step[field], base + (field,)
        approval = step.get("approval")
        if isinstance(approval, dict) and isinstance(approval.get("message"), str):
            yield "approval", approval["message"], base + ("approval", "message")
        if isinstance(step.get("run"), list):
            for position, arg in enumerate(step["run"]):
                if isinstance(arg, str):
                    yield "run", arg, base + ("run", position)
        if isinstance(step.get("for_each"), list):
            for position, value in enumerate(step["for_each"]):
                for text in templates.strings_in(value):
                    yield "for_each", text, base + ("for_each", position)
        if isinstance(step.get("with"), dict):
            for key, value in step["with"].items():
                for text in templates.strings_in(value):
                    yield "with", text, base + ("with", key)

    @staticmethod
    def _compensate_fields(compensate: dict, base: tuple):
        if isinstance(compensate.get("prompt"), str):
            yield "prompt", compensate["prompt"], base + ("prompt",)
        if isinstance(compensate.get("run"), list):
            for position, arg in enumerate(compensate["run"]):
                if isinstance(arg, str):
                    yield "run", arg, base + ("run", position)

    def _expression_fields(self, step: dict, base: tuple):
        if isinstance(step.get("when"), str):
            yield "when", step["when"], base + ("when",)
        if isinstance(step.get("assert"), str):
            yield "assert", step["assert"], base + ("assert",)
        if isinstance(step.get("for_each"), str):
            yield "for_each", step["for_each"], base + ("for_each",)
        repeat = step.get("repeat")
        if isinstance(repeat, dict) and isinstance(repeat.get("until"), str):
            yield "until", repeat["until"], base + ("repeat", "until")
        for field in ("approve_if", "review_if"):
            if isinstance(step.get(field), str):
                yield field, step[field], base + (field,)
        gate = step.get("gate")
        gates = [gate] if isinstance(gate, str) else gate if isinstance(gate, list) else []
        for position, text in enumerate(gates):
            if isinstance(text, str):
                path = base + ("gate",) + ((position,) if isinstance(gate, list) else ())
                yield "gate", text, path

    def _check_template(self, step_id: str, text: str, path: tuple, where: str,
                        has_items: bool, has_iteration: bool, extra: set[str] = frozenset()) -> None:
        if not templates.is_template(text):
            return
        try:
            info = templates.inspect(text)
        except TemplateError as exc:
            self.add(path, where, str(exc), "close every {{ and {% and check the expression inside")
            return
        allowed = ({"inputs", "steps", "run"} | ({"item"} if has_items else set())
                   | ({"iteration"} if has_iteration else set()) | set(extra))
        for name in sorted(info.names - allowed):
            if name == "item":
                self.add(path, where, "`item` is used but the step has no `for_each`",
                         "add `for_each:` to the step, or remove `item`")
            elif name == "iteration":
                self.add(path, where, "`iteration` is used but the step has no `repeat`",
                         "add `repeat:` to the step, or remove `iteration`")
            else:
                self.add(path, where, f"template refers to unknown name `{name}`",
                         f"use one of: {', '.join(sorted(allowed))}")
        self._check_keys(step_id, info.keys.get("steps", ()), info.keys.get("inputs", ()), path, where)
        self._check_fields(info.step_fields, path, where)

    def _check_expression(self, step_id: str, text: str, path: tuple, where: str,
                          roots: tuple[str, ...], has_items: bool) -> None:
        if "item" in roots and not has_items:
            roots = tuple(r for r in roots if r != "item")
        try:
            parsed = expressions.parse(text, roots=roots)
        except ExpressionError as exc:
            self.add(path, where, f"expression is not valid: {exc}",
                     "use comparisons, and/or/not, in, and names such as steps.ID.status")
            return
        self._check_keys(step_id, parsed.references("steps"), parsed.references("inputs"), path, where)
        self._check_fields(parsed.step_fields(), path, where)

    def _check_fields(self, fields: Any, path: tuple, where: str) -> None:
        """`steps.a.sumary`: a step's result has known fields, so a typo is found now."""
        for step, field in sorted(fields):
            if step in self.known and field not in RESULT_FIELDS:
                close = difflib.get_close_matches(field, RESULT_FIELDS, n=1, cutoff=0.6)
                fix = f"did you mean `{close[0]}`?" if close else f"a result has: {', '.join(RESULT_FIELDS)}"
                self.add(path, where, f"`steps.{step}.{field}`: a step's result has no field `{field}`", fix)

    def _check_keys(self, step_id: str, steps: Any, inputs: Any, path: tuple, where: str) -> None:
        for name in sorted(steps):
            if name == step_id:
                self.add(path, where, f"step `{step_id}` refers to its own result",
                         "use `result` inside repeat.until or gate, or refer to an earlier step")
            elif name not in self.known:
                self._unknown_step(name, path, where, "refers to")
            else:
                self.referenced[step_id].add(name)
                self.edges.setdefault((step_id, name), (path, "{step} refers to {upstream}"))
        for name in sorted(inputs):
            if name not in self.inputs:
                close = difflib.get_close_matches(name, sorted(self.inputs), n=1, cutoff=0.6)
                fix = f"did you mean `{close[0]}`?" if close else "declare it under `inputs:`"
                self.add(path, where, f"refers to undeclared input `{name}`", fix)

    def _check_kind(self, step: dict, base: tuple, prefix: str) -> None:
        for kind, feature in _UNSUPPORTED_STEPS.items():
            if step.get(kind) is not None:
                self.add(base + (kind,), f"{prefix}.{kind}",
                         f"`{kind}` steps ({feature}) are parsed but this version of agentflow cannot run them",
                         "replace it with a run, call or agent step until a later version")
        compensate = step.get("compensate")
        if isinstance(compensate, dict) and isinstance(compensate.get("agent"), str):
            if compensate["agent"] not in self.agents:
                self._unknown_agent(compensate["agent"], base + ("compensate", "agent"), f"{prefix}.compensate.agent")
        self._check_with_keys(step, base, prefix)
        for field in ("agent", "fallback"):
            name = step.get(field)
            if not isinstance(name, str):
                continue
            agent = self.agents.get(name)
            if name.startswith(BLOCK_PREFIX):
                continue  # an AgentConfig block, loaded from the Prefect server when the run starts
            if agent is None:
                self._unknown_agent(name, base + (field,), f"{prefix}.{field}")
            elif agent.kind not in RUNNABLE_AGENT_KINDS:
                self.add(base + (field,), f"{prefix}.{field}",
                         f"agent `{name}` is of kind `{agent.kind}`, which this version of agentflow cannot run",
                         f"use an agent of kind {' or '.join(RUNNABLE_AGENT_KINDS)} for now")

    def _check_with_keys(self, step: dict, base: tuple, prefix: str) -> None:
        """`with:` keys a `call:` function cannot take, when its module can be imported now."""
        target = step.get("call")
        params = step.get("with")
        if not isinstance(target, str) or not isinstance(params, dict) or not params:
            return
        accepted = callables.accepted_parameters(target)
        if accepted is None:
            return  # not importable here (it may be at run time): the run will say
        unknown = sorted(str(k) for k in params if str(k) not in accepted)
        for key in unknown:
            close = difflib.get_close_matches(key, sorted(accepted), n=1, cutoff=0.6)
            fix = f"did you mean `{close[0]}`?" if close else (
                f"it takes: {', '.join(sorted(accepted)) or 'no parameters'}")
            self.add(base + ("with", key), f"{prefix}.with.{key}", f"`{target}` has no parameter `{key}`", fix)

    # ---- the graph ------------------------------------------------------------------------
    def check_cycle(self, pattern: Any) -> dict[str, list[str]]:
        pattern = pattern if pattern in ("sequential", "parallel", "dag") else "dag"
        deps = graph.dependencies(self.ids, self.explicit, self.referenced, pattern)
        cycle = graph.find_cycle(deps)
        if cycle:
            # Said at the line that makes the cycle's first edge, with every edge's own line.
            edges = [self._edge(step, upstream) for step, upstream in zip(cycle, cycle[1:])]
            path = edges[0][0]
            how = "; ".join(verb.format(step=step, upstream=upstream) + f" (line {self.document.line_of(at)})"
                            for (at, verb), step, upstream in zip(edges, cycle, cycle[1:]))
            self.add(path, format_path(path), f"the steps form a cycle: {' -> '.join(cycle)}: {how}",
                     "remove one of these dependencies or references (under `sequential`, "
                     "a step cannot refer to a later step)")
        return deps

    def _edge(self, step: str, upstream: str) -> tuple[tuple, str]:
        """Where the definition makes `step` wait for `upstream`, and how."""
        if (step, upstream) in self.edges:
            return self.edges[(step, upstream)]
        return ("steps", self.ids.index(step)), "{step} comes after {upstream} under `sequential`"
