"""Sub-workflows: a `workflow: FILE` step's workflow, loaded with its parent and checked against
the step: its `with:` against the child's declared inputs (a secret goes only to a secret
input, and a secret input gets only a secret), and no file calling itself again through its
children (the chain is named)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from agentflow.errors import Problem, SpecError, TemplateError
from agentflow.flows.language import templates
from agentflow.flows.language.document import Document

Loader = Callable[[Path, tuple[Path, ...]], Any]  # (file, the chain that led to it) -> ResolvedWorkflow


def load(document: Document, source: str, base_dir: Path, chain: tuple[Path, ...],
         load_child: Loader) -> tuple[dict[str, Any], list[Problem]]:
    """Each `workflow:` step's resolved child, by step id, and every problem found."""
    children: dict[str, Any] = {}
    problems: list[Problem] = []
    steps = document.data.get("steps") if isinstance(document.data.get("steps"), list) else []
    for index, step in enumerate(steps):
        if not isinstance(step, dict) or not isinstance(step.get("workflow"), str):
            continue
        reference, where = step["workflow"], f"steps[{index}].workflow"
        line = document.line_of(("steps", index, "workflow"))
        if templates.is_template(reference):
            problems.append(Problem(source, line, where, "a sub-workflow's file is fixed, not a template",
                                    "name the file; choose between workflows with `when:` on two steps"))
            continue
        try:
            target = (base_dir / reference).resolve()
        except (RuntimeError, OSError):  # Python 3.11 says a symlink loop with RuntimeError
            problems.append(Problem(source, line, where, f"`{reference}` cannot be followed: a symlink loop",
                                    "point it at the workflow file itself"))
            continue
        root = _root(chain[0] if chain else base_dir / "x")
        if not target.is_relative_to(root):
            problems.append(Problem(source, line, where, f"`{reference}` is outside the repository ({root})",
                                    "a sub-workflow is a file of the same repository: copy it in, or give "
                                    "its path inside the repository"))
            continue
        if target in chain:
            names = " -> ".join(p.name for p in (*chain[chain.index(target):], target))
            problems.append(Problem(source, line, where, f"workflow files call each other: {names}",
                                    "a workflow may not run itself, directly or through its children"))
            continue
        if not target.is_file():
            problems.append(Problem(source, line, where, f"no workflow file at {target}",
                                    "give the path relative to this file"))
            continue
        try:
            child = load_child(target, chain)
        except SpecError as exc:
            problems += exc.problems  # located in the child's own file
            continue
        problems += _inputs(step, child, source, document, index)
        problems += _secrets(step, child, _secret_inputs(document), source, document, index)
        children[str(step.get("id"))] = child
    return children, problems


def _root(top: Path) -> Path:
    """Where sub-workflows may be: the git repository of the top workflow file, or, outside one,
    its folder. Nothing a definition names can make the loader read a file beyond it."""
    folder = top.resolve().parent
    for candidate in (folder, *folder.parents):
        if (candidate / ".git").exists():
            return candidate
    return folder


def _inputs(step: dict, child: Any, source: str, document: Document, index: int) -> list[Problem]:
    given = step.get("with") if isinstance(step.get("with"), dict) else {}
    declared = child.spec.inputs
    problems = []
    for key in sorted(set(map(str, given)) - set(declared)):
        problems.append(Problem(source, document.line_of(("steps", index, "with", key)), f"steps[{index}].with.{key}",
                                f"workflow `{child.spec.name}` has no input `{key}`",
                                f"its inputs: {', '.join(sorted(declared)) or 'none'}"))
    missing = sorted(n for n, spec in declared.items() if spec.required and not spec.secret and n not in given)
    if missing:
        problems.append(Problem(source, document.line_of(("steps", index)), f"steps[{index}].with",
                                f"workflow `{child.spec.name}` needs input(s) {', '.join(missing)}",
                                "give them under the step's with:"))
    return problems


def _secret_inputs(document: Document) -> set[str]:
    inputs = document.data.get("inputs") if isinstance(document.data.get("inputs"), dict) else {}
    return {str(name) for name, spec in inputs.items() if isinstance(spec, dict) and spec.get("secret") is True}


def _secrets(step: dict, child: Any, secrets: set[str], source: str, document: Document,
             index: int) -> list[Problem]:
    """A parent's secret given to a child's plain input would be a parameter of the child's run,
    stored on the server and printed by the child; a literal given to a child's secret input
    is written in this file, so it is no secret."""
    given = step.get("with") if isinstance(step.get("with"), dict) else {}
    problems = []
    for key, value in given.items():
        declared = child.spec.inputs.get(str(key))
        if declared is None:
            continue  # reported by _inputs
        path, where = ("steps", index, "with", key), f"steps[{index}].with.{key}"
        texts = list(templates.strings_in(value))
        if declared.secret and not texts:
            problems.append(Problem(source, document.line_of(path), where,
                                    f"a literal given to `{child.spec.name}`'s secret input `{key}` is no secret: "
                                    "it is written in this file",
                                    "pass one of this workflow's secret inputs (`{{ inputs.NAME }}`)"))
        elif not declared.secret:
            for name in sorted(_used(texts) & secrets):
                problems.append(Problem(source, document.line_of(path), where,
                                        f"the secret input `{name}` would be written in clear: `{child.spec.name}`'s "
                                        f"input `{key}` is not secret, so it is a parameter of the child's run "
                                        "(stored on the server) and the child may print it",
                                        f"declare it secret in {step.get('workflow')} (`{key}: {{secret: true}}`), or pass "
                                        "another value"))
    return problems


def _used(texts: list[str]) -> set[str]:
    used: set[str] = set()
    for text in texts:
        try:
            used |= set(templates.inspect(text).keys.get("inputs", frozenset()))
        except TemplateError:
            pass  # reported by the template checks
    return used
