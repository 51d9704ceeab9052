"""`agentflow lint`: what a valid workflow may still get wrong, each with a stable code and a fix.

Four categories, as the earlier engine's validator had: security (S), reliability (R),
performance (P) and best practice (B). A warning is located like a problem (file and line);
`# agentflow: ignore[CODE]` on that line, or the line above it, silences it. Pure: the loaded
workflow and its parsed document in, warnings out.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Iterator

from agentflow.flows.language.document import Document
from agentflow.flows.language.spec import ResolvedWorkflow

CATEGORIES = {"S": "security", "R": "reliability", "P": "performance", "B": "best-practice"}
SHELLS = {"sh", "bash", "zsh", "dash", "ksh", "fish"}
_PIPE_TO_SHELL = re.compile(r"\b(curl|wget)\b[^|]*\|\s*(sudo\s+)?(ba|z|da)?sh\b")
_CREDENTIAL = re.compile(r"(?i)\b(sk-[A-Za-z0-9_-]{16,}|ghp_[A-Za-z0-9]{20,}|gh[ousr]_[A-Za-z0-9]{20,}|AKIA[0-9A-Z]{16}|"
                         r"xox[abpr]-[A-Za-z0-9-]{10,}|(api[_-]?key|token|passw(or)?d|secret)\s*[:=]\s*['\"]?[^\s'\"{]{8,})")
_STEP_REF = re.compile(r"\bsteps\s*(?:\.\s*([A-Za-z_]\w*)|\[\s*['\"]([A-Za-z_]\w*)['\"]\s*\])")
_INPUT_REF = re.compile(r"\binputs\s*(?:\.\s*([A-Za-z_]\w*)|\[\s*['\"]([A-Za-z_]\w*)['\"]\s*\]|(\[))")
_IGNORE = re.compile(r"#\s*agentflow:\s*ignore\[([A-Z0-9, ]+)\]")


@dataclass(frozen=True)
class Warning_:
    code: str
    file: str
    line: int | None
    where: str
    what: str
    fix: str

    @property
    def category(self) -> str:
        return CATEGORIES[self.code[0]]

    def __str__(self) -> str:
        location = f"{self.file}:{self.line}" if self.line else self.file
        return f"{location}: {self.code} {self.category}: {self.where}: {self.what}; {self.fix}"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "category": self.category}


def lint(resolved: ResolvedWorkflow, document: Document, text: str, source: str) -> list[Warning_]:
    """Every warning of the workflow, in file order, those its comments ignore left out."""
    found: list[Warning_] = []
    spec = resolved.spec

    def warn(code: str, path: tuple, what: str, fix: str) -> None:
        where = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in path).replace(".[", "[") or "workflow"
        found.append(Warning_(code, source, document.line_of(path), where, what, fix))

    refs = {step.id: _refers(document, index) for index, step in enumerate(spec.steps)}
    for index, step in enumerate(spec.steps):
        base = ("steps", index)
        agent = resolved.agents.get(step.agent) if step.agent else None
        _security(step, agent, base, warn)
        if agent is not None:
            if step.timeout is None and spec.defaults.timeout is None and agent.timeout is None:
                warn("R001", base + ("agent",), f"agent step `{step.id}` has no timeout",
                     "set `timeout:` on the step, the agent or the workflow's defaults (a hung agent holds the run)")
            fallback = step.fallback or agent.fallback
            critical = (step.criticality or agent.criticality) == "critical"
            if fallback is None and critical:
                warn("R003", base + ("agent",), f"critical agent step `{step.id}` has no fallback",
                     "give the agent a `fallback:` (a stand-in that can answer when it cannot)")
            elif fallback is None:
                warn("R002", base + ("agent",), f"agent step `{step.id}` has no fallback",
                     "give the agent or the step a `fallback:`, or accept that the step fails when it cannot serve")
            if step.cache is False:
                warn("P003", base + ("cache",), f"agent step `{step.id}` is never cached",
                     "drop `cache: false` unless its answer must change between identical calls")
        retries = step.retries if step.retries is not None else spec.defaults.retries
        if step.run is not None and retries and not (step.cache or spec.defaults.cache):
            warn("R004", base + ("run",), f"`{step.id}` runs a command {retries} more time(s) when it fails",
                 "if the command is not idempotent (it deploys, sends, writes), set `retries: 0` or `cache:` it")
        if step.for_each is not None and step.max_parallel is None:
            warn("P002", base + ("for_each",), f"`{step.id}` runs its items with no `max_parallel` of its own",
                 "set `max_parallel:` to what the agent or service behind it can take at once")
    if spec.deliver == "apply" and not any(s.approval is not None or s.approve_if for s in spec.steps):
        warn("S006", ("deliver",), "the run's work is applied to your tree with no approval before it",
             "add an approval step, or deliver as a branch (`deliver: branch`) and apply it yourself")
    if spec.pattern == "sequential" and len(spec.steps) > 1:
        alone = [s.id for s in spec.steps[1:] if not refs[s.id] and not s.depends_on]
        if len(alone) == len(spec.steps) - 1:
            warn("P001", ("pattern",) if "pattern" in document.data else ("name",),
                 f"no step uses another's result ({', '.join(alone[:5])} too), yet they run one after another",
                 "use `pattern: parallel` (or `dag` with `depends_on`) so that they run at the same time")
    _best_practice(resolved, document, refs, warn)
    return [w for w in sorted(found, key=lambda w: (w.line or 0, w.code)) if not _ignored(w, text)]


def _security(step: Any, agent: Any, base: tuple, warn: Any) -> None:
    argv = step.run or []
    if argv and argv[0].rsplit("/", 1)[-1] in SHELLS and "-c" in argv:
        warn("S001", base + ("run",), f"`{step.id}` runs its command through a shell (`{argv[0]} -c`)",
             "give the program and its arguments as a list: values then never reach a shell parser")
    if argv and (argv[0] == "sudo" or any(a == "sudo" or a.startswith("sudo ") or " sudo " in a for a in argv)):
        warn("S003", base + ("run",), f"`{step.id}` runs a command as root (sudo)",
             "run as the user; give the step only the rights it needs")
    for position, arg in enumerate(argv):
        if _PIPE_TO_SHELL.search(arg):
            warn("S002", base + ("run", position), f"`{step.id}` pipes a download into a shell",
                 "download, check the file's digest, then run it")
    for path, value in _strings(step.model_dump(by_alias=True, exclude_none=True), base):
        if _CREDENTIAL.search(value):  # `token={{ inputs.t }}` does not match: a value starts with `{`
            warn("S004", path, f"`{step.id}` holds what looks like a credential", "declare a `secret: true` input "
                 "(or an environment variable) and refer to it; never write a key in a definition")
    tools = set(agent.allowed_tools) if agent is not None and agent.kind == "claude-code" else set()
    if ("Bash" in tools or any(t.startswith("Bash(") for t in tools)) and step.writes is None:
        warn("S005", base + ("agent",), f"agent `{step.agent}` may run any shell command and `{step.id}` has no "
             "`writes:`", "bound where the step may change files with `writes:` (a change elsewhere fails it)")


def _best_practice(resolved: ResolvedWorkflow, document: Document, refs: dict[str, set[str]], warn: Any) -> None:
    spec = resolved.spec
    if not spec.description:
        warn("B001", ("name",), f"workflow `{spec.name}` has no description",
             "add `description:` (the UI, `agentflow runs` and deployments show it)")
    used = _inputs_used(document)
    if used is not None:
        for name in spec.inputs:
            if name not in used:
                warn("B002", ("inputs", name), f"input `{name}` is never used",
                     "refer to it (`{{ inputs." + name + " }}`) or remove it")
    if isinstance(spec.agents, dict):  # agents defined in the workflow itself (a shared file is not judged)
        named = {s.agent for s in spec.steps} | {s.fallback for s in spec.steps}
        named |= {a.fallback for a in spec.agents.values()}
        for name in spec.agents:
            if name not in named:
                warn("B003", ("agents", name), f"agent `{name}` is defined but no step uses it",
                     "use it in a step (or as a fallback), or remove it")
    if spec.pattern == "dag":
        needed = {d for step in spec.steps for d in step.depends_on} | {r for rs in refs.values() for r in rs}
        sinks = [s.id for s in spec.steps if s.id not in needed and s.assert_ is None]
        for step in spec.steps[:-1]:
            if step.id in sinks and len(sinks) > 1:
                index = spec.steps.index(step)
                warn("B004", ("steps", index, "id"), f"nothing depends on `{step.id}` in this dag",
                     "make a later step depend on it (`depends_on:`), or say why it ends a branch of the run")


def _refers(document: Document, index: int) -> set[str]:
    """The steps step `index` names in its templates, expressions and depends_on."""
    raw = document.data["steps"][index]
    names: set[str] = set()
    for _, value in _strings(raw, ()):
        names |= {a or b for a, b in _STEP_REF.findall(value)}
    return names - {raw.get("id")}


def _inputs_used(document: Document) -> set[str] | None:
    """The inputs the workflow's strings name; None if one is indexed by a value (all may be)."""
    used: set[str] = set()
    for key, value in document.data.items():
        if key == "inputs":
            continue
        for _, text in _strings(value, ()):
            for name, quoted, bracket in _INPUT_REF.findall(text):
                if bracket:
                    return None
                used.add(name or quoted)
    return used


def _strings(value: Any, path: tuple) -> Iterator[tuple[tuple, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, path + (key,))
    elif isinstance(value, list):
        for position, item in enumerate(value):
            yield from _strings(item, path + (position,))


def _ignored(warning: Warning_, text: str) -> bool:
    if not warning.line:
        return False
    lines = text.splitlines()
    for number in (warning.line, warning.line - 1):
        if 1 <= number <= len(lines):
            match = _IGNORE.search(lines[number - 1])
            if match and warning.code in {c.strip() for c in match.group(1).split(",")}:
                return True
    return False
