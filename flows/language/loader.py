"""YAML file → `ResolvedWorkflow`, with every problem reported at once, each at its line.

The loader does the I/O (reading the workflow and its agents file); structural checks come
from the pydantic models, and the cross-references (step ids, agents, templates,
expressions, cycles) from `flows.checks`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from agentflow import config
from agentflow.flows.language import canonical
from agentflow.flows.language import document as yamldoc
from agentflow.flows.language.pydantic_problems import problems_from
from agentflow.flows.language.checks import check_agents_file, check_workflow
from agentflow.errors import Problem, SpecError, format_got, format_path
from agentflow.flows.language import children, graph, phases, settings_defaults, subagents
from agentflow.flows.language.spec import (AgentsFile, AgentSpec, DegradedMode, FallbacksFile, ResolvedWorkflow,
                                            Subagent, Workflow)


def load_workflow(path: str | Path, _chain: tuple[Path, ...] = ()) -> ResolvedWorkflow:
    """Load, check and resolve a workflow file (and its sub-workflows); raise SpecError listing
    every problem."""
    path = Path(path)
    text = _read(path, "workflow")
    return load_text(text, source=str(path), base_dir=path.parent, _chain=(*_chain, path.resolve()))


def is_agents_file(path: str | Path) -> bool:
    """An agents file is a mapping with `agents:` and no `steps:` (used by `validate`)."""
    try:
        data = yamldoc.parse(_read(Path(path), "agents")).data
    except (SpecError, yamldoc.YamlSyntaxError):
        return False
    return isinstance(data, dict) and "agents" in data and "steps" not in data and "name" not in data


def load_agents_file(path: str | Path) -> dict[str, AgentSpec]:
    """Load and check an agents file on its own; raise SpecError listing every problem."""
    agents, problems, source, document = _agents(Path(path).name, yamldoc.Document(data={}), str(path),
                                                 Path(path).parent)
    if document is not None and not problems:
        problems += check_agents_file(agents, source, document)
    if problems:
        raise SpecError(_sorted(problems))
    return agents


def load_text(text: str, source: str = "<text>", base_dir: Path | None = None,
              _chain: tuple[Path, ...] = ()) -> ResolvedWorkflow:
    document = _parse(text, source)
    problems: list[Problem] = _duplicate_keys(document, source)
    if document.data is None:
        raise SpecError([Problem(source, 1, "", "the file holds no definition (it is empty or only comments)",
                                 "start with `name:` and `steps:`")])
    if not isinstance(document.data, dict):
        raise SpecError([Problem(source, document.line_of(()) or 1, "", "a workflow must be a YAML mapping",
                                 "start with `name:` and `steps:`", format_got(document.data))])
    problems += _template_sources(document, source, base_dir or Path("."))
    spec, model_problems = _validate(Workflow, document, source)
    problems += model_problems
    settings = config.at((base_dir or Path(".")).resolve())  # the repository's: agentflow.toml, AGENTFLOW_*
    if spec is not None:
        spec = settings_defaults.workflow(spec, settings)

    agents, agent_problems, agents_source, agents_doc = _agents(
        settings_defaults.agents_reference(document.data.get("agents"), settings), document, source, base_dir)
    problems += agent_problems
    fallbacks_degraded = None
    for owner, owner_doc, owner_dir in ((agents_doc, agents_doc, Path(agents_source).parent),
                                        (document, document, base_dir or Path("."))):
        reference = owner.data.get("fallbacks") if owner is not None and isinstance(owner.data, dict) else None
        if isinstance(reference, str) and (owner is document or agents_doc is not document):
            where = source if owner is document else agents_source
            agents, found_mode, overlay_problems = _fallbacks(reference, owner_dir, agents, owner_doc, where)
            problems += overlay_problems
            fallbacks_degraded = found_mode or fallbacks_degraded
    starts = list(dict.fromkeys([Path.cwd(), (base_dir or Path(".")).resolve()]))
    agents = {**_implicit_subagents(document.data.get("steps"), agents, starts), **agents}
    agents = settings_defaults.agents(agents, settings)  # circuit breakers the agents leave to the settings
    found, subagent_problems = _subagents(agents, starts, document, source, agents_doc, agents_source)
    problems += subagent_problems
    reference_problems, dependencies = check_workflow(document, source, agents, agents_source, agents_doc)
    problems += reference_problems
    if spec is not None and not problems:
        spec, dependencies, phase_problems = phases.expand(spec, dependencies, document, source)
        problems += phase_problems
    if spec is not None and not problems and spec.workspace == "in-place":
        problems += _in_place_side_by_side(spec, dependencies, document, source)
    found_children, child_problems = children.load(document, source, (base_dir or Path(".")).resolve(), _chain,
                                                   lambda path, chain: load_workflow(path, chain))
    problems += child_problems
    if problems or spec is None:
        raise SpecError(_sorted(problems))
    degraded = spec.degraded_mode or _file_degraded_mode(agents_doc, document) or fallbacks_degraded or DegradedMode()
    definition = canonical.workflow_definition(spec, agents)
    if found:  # a subagent's prompt is part of the definition (absent: hashes as before)
        definition["subagents"] = {n: sub.model_dump(mode="json", exclude={"path"}) for n, sub in sorted(found.items())}
    if found_children:  # a child's version is part of its parent's
        definition["children"] = {step: child.spec_hash for step, child in sorted(found_children.items())}
    return ResolvedWorkflow(spec=spec, agents=agents, source=source, spec_hash=canonical.digest(definition, 16),
                            dependencies={k: tuple(v) for k, v in dependencies.items()}, degraded=degraded,
                            subagents=found, children=found_children)


def _implicit_subagents(raw_steps: Any, agents: dict[str, AgentSpec], starts: list[Path]) -> dict[str, AgentSpec]:
    """A step's `agent`/`fallback` that no agents file defines but `.claude/agents/NAME.md`
    does: a claude-code agent running that subagent, with no further configuration."""
    implicit: dict[str, AgentSpec] = {}
    for step in raw_steps if isinstance(raw_steps, list) else []:
        for field in ("agent", "fallback"):
            name = step.get(field) if isinstance(step, dict) else None
            if isinstance(name, str) and name not in agents and name not in implicit and subagents.find(name, starts):
                implicit[name] = AgentSpec(kind="claude-code", subagent=name)
    return implicit


def _subagents(agents: dict[str, AgentSpec], starts: list[Path], document: yamldoc.Document, source: str,
               agents_doc: yamldoc.Document | None, agents_source: str) -> tuple[dict[str, Subagent], list[Problem]]:
    """The subagent file of every claude-code agent that names one, or a problem at its line."""
    found: dict[str, Subagent] = {}
    problems: list[Problem] = []
    for name, agent in agents.items():
        if agent.subagent is None or agent.subagent in found:
            continue
        doc, where = (agents_doc, agents_source) if agents_doc is not None else (document, source)
        line = doc.line_of(("agents", name, "subagent")) or doc.line_of(("agents", name))
        path = subagents.find(agent.subagent, starts)
        if path is None:
            problems.append(Problem(where, line, f"agents.{name}.subagent",
                                    f"subagent `{agent.subagent}` not found: no {agent.subagent}.md in "
                                    f"{subagents.places(starts)}",
                                    "create it (frontmatter with description and tools, then the prompt) or "
                                    "fix the name"))
            continue
        try:
            found[agent.subagent] = subagents.read(agent.subagent, path)
        except subagents.SubagentError as exc:
            problems.append(Problem(where, line, f"agents.{name}.subagent", str(exc),
                                    "fix the file: `---`, name/description/tools, `---`, then the prompt"))
    return found, problems


def _fallbacks(reference: str, directory: Path, agents: dict[str, AgentSpec], owner: yamldoc.Document,
               owner_source: str) -> tuple[dict[str, AgentSpec], DegradedMode | None, list[Problem]]:
    """The earlier engine's agent-fallbacks.json (JSON is YAML) applied over `agents`: each
    named agent gets its fallback, prompt suffix, criticality and skip_if_unavailable."""
    path = directory / reference
    if not path.is_file():
        return agents, None, [Problem(owner_source, owner.line_of(("fallbacks",)), "fallbacks",
                                      f"fallbacks file `{reference}` not found (looked in {path.parent})",
                                      "the path is relative to the file that names it")]
    try:
        document = _parse(_read(path, "fallbacks"), str(path))
    except SpecError as exc:
        return agents, None, exc.problems
    parsed, problems = _validate(FallbacksFile, document, str(path))
    if parsed is None:
        return agents, None, problems
    merged = dict(agents)
    for name, entry in parsed.agents.items():
        line = document.line_of(("agents", name))
        if name not in merged:
            problems.append(Problem(str(path), line, f"agents.{name}", f"agent `{name}` is not defined",
                                    "define it in the agents file (with its kind), or remove it here"))
            continue
        if entry.fallback is not None and entry.fallback not in merged:
            problems.append(Problem(str(path), document.line_of(("agents", name, "fallback")) or line,
                                    f"agents.{name}.fallback", f"fallback agent `{entry.fallback}` is not defined",
                                    "define it in the agents file, or set the fallback to null"))
            continue
        update = entry.model_dump(exclude_unset=True)
        if update.get("criticality") is None:
            update.pop("criticality", None)
        merged[name] = merged[name].model_copy(update=update)
    return merged, parsed.degraded_mode, problems


def _file_degraded_mode(agents_doc: yamldoc.Document | None, document: yamldoc.Document) -> DegradedMode | None:
    """`degraded_mode` (or the earlier engine's `degraded_mode_config`) of an agents file."""
    if agents_doc is None or agents_doc is document or not isinstance(agents_doc.data, dict):
        return None
    raw = agents_doc.data.get("degraded_mode", agents_doc.data.get("degraded_mode_config"))
    try:
        return DegradedMode.model_validate(raw) if isinstance(raw, dict) else None
    except ValidationError:
        return None  # reported with the agents file


MAX_FILE_BYTES = 10_000_000  # a definition this long is a mistake (or /dev/zero), not a workflow


def _template_sources(document: yamldoc.Document, source: str, base_dir: Path) -> list[Problem]:
    """Each template step's `source` file read into its `inline` text (relative to the
    workflow), so that its content is part of the workflow's version; a problem at its line
    when it cannot be read."""
    problems = []
    steps = document.data.get("steps")
    for index, step in enumerate(steps if isinstance(steps, list) else []):
        spec = step.get("template") if isinstance(step, dict) else None
        if not isinstance(spec, dict) or not isinstance(spec.get("source"), str):
            continue
        at = ("steps", index, "template", "source")
        if "inline" in spec:
            problems.append(Problem(source, document.line_of(at), f"steps[{index}].template",
                                    "give `source` or `inline`, not both", "keep the one that holds the template"))
            continue
        path = base_dir / spec["source"]
        try:
            spec["inline"] = _read(path, "the template")
        except SpecError as exc:
            spec["inline"] = ""
            what = exc.problems[0].what
            problems.append(Problem(source, document.line_of(at), f"steps[{index}].template.source",
                                    f"{spec['source']}: {what} ({path})",
                                    "give the template's path relative to the workflow file"))
    return problems


def _read(path: Path, what: str) -> str:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise SpecError([Problem(str(path), None, "", f"{what} file is larger than {MAX_FILE_BYTES:,} bytes",
                                     "give the definition file itself; split a definition this large")])
        return data.decode("utf-8")
    except FileNotFoundError:
        raise SpecError([Problem(str(path), None, "", f"{what} file not found",
                                 "check the path (it is relative to the current directory)")]) from None
    except IsADirectoryError:
        raise SpecError([Problem(str(path), None, "", f"{what} path is a directory", "give a .yaml file")]) from None
    except UnicodeDecodeError as exc:
        line = exc.object[:exc.start].count(b"\n") + 1
        raise SpecError([Problem(str(path), line, "", f"{what} file is not UTF-8 text (byte "
                                 f"0x{exc.object[exc.start]:02x}: {exc.reason})", "save it as UTF-8")]) from None
    except OSError as exc:
        raise SpecError([Problem(str(path), None, "", f"{what} file cannot be read: {exc.strerror}",
                                 "check its permissions")]) from None


def _parse(text: str, source: str) -> yamldoc.Document:
    try:
        return yamldoc.parse(text)
    except yamldoc.YamlSyntaxError as exc:
        raise SpecError([Problem(source, exc.line, "", f"YAML syntax error: {exc}",
                                 "fix the indentation or quoting on that line")]) from None


def _duplicate_keys(document: yamldoc.Document, source: str) -> list[Problem]:
    return [
        Problem(source, line, format_path(path), f"key `{path[-1]}` appears twice (first at line {first})",
                "keep one of them: YAML would silently use the last")
        for path, first, line in document.duplicates
    ]


def _validate(model: type[BaseModel], document: yamldoc.Document, source: str):
    try:
        return model.model_validate(document.data), []
    except ValidationError as exc:
        return None, problems_from(exc, model, document, source)


def _agents(value: Any, document: yamldoc.Document, source: str, base_dir: Path | None):
    """The agent registry: from a file named in `agents:`, or inline; with its problems."""
    if value is None:
        return {}, [], source, document
    if isinstance(value, dict):
        agents: dict[str, AgentSpec] = {}
        for name, raw in value.items():
            try:
                agents[str(name)] = AgentSpec.model_validate(raw)
            except ValidationError:
                pass  # already reported, at its line, by validating the whole workflow
        return agents, [], source, document
    if isinstance(value, str):
        agents_path = (base_dir or Path(".")) / value
        if not agents_path.is_file():
            return {}, [Problem(source, document.line_of(("agents",)), "agents",
                                f"agents file `{value}` not found (looked in {agents_path.parent})",
                                "the path is relative to the workflow file; fix it or create the file")], \
                source, None
        try:
            text = _read(agents_path, "agents")
            agents_doc = _parse(text, str(agents_path))
        except SpecError as exc:
            return {}, exc.problems, str(agents_path), None
        if not isinstance(agents_doc.data, dict) or "agents" not in agents_doc.data:
            return {}, [Problem(str(agents_path), agents_doc.line_of(()), "",
                                "an agents file is a mapping with `agents:` (and optionally `degraded_mode:`)",
                                "put the agent definitions under `agents:`")], str(agents_path), agents_doc
        problems = _duplicate_keys(agents_doc, str(agents_path))
        parsed, model_problems = _validate(AgentsFile, agents_doc, str(agents_path))
        problems += model_problems
        agents = dict(parsed.agents) if parsed else _valid_agents(agents_doc.data.get("agents"))
        return agents, problems, str(agents_path), agents_doc
    if isinstance(value, list):
        return {}, [Problem(source, document.line_of(("agents",)), "agents",
                            "agents from AgentConfig blocks are not supported by this version",
                            "define the agents in a file (agents: agents.yaml) or inline")], source, document
    return {}, [], source, document


def _valid_agents(raw: Any) -> dict[str, AgentSpec]:
    """The agents that are valid, so that references to them are not reported as missing."""
    agents = {}
    for name, value in (raw or {}).items() if isinstance(raw, dict) else []:
        try:
            agents[str(name)] = AgentSpec.model_validate(value)
        except ValidationError:
            pass  # reported by validating the whole file
    return agents


def _in_place_side_by_side(spec: Workflow, dependencies: dict, document: yamldoc.Document,
                           source: str) -> list[Problem]:
    """`workspace: in-place` with steps that may write at the same time: their changes could
    not be told apart (each step's work is captured from the one tree they share)."""
    together = graph.writers_side_by_side(spec.steps, dependencies, spec.max_parallel)
    if not together:
        return []
    return [Problem(source, document.line_of(("workspace",)), "workspace",
                    f"steps {', '.join(f'`{s}`' for s in together[:5])} may run at the same time, and in place "
                    "their changes to your tree could not be told apart",
                    "drop `workspace: in-place` (each runs in a worktree of its own), or run them one after "
                    "another (pattern: sequential, depends_on, or max_parallel: 1)")]


def _sorted(problems: list[Problem]) -> list[Problem]:
    unique = list(dict.fromkeys(problems))
    return sorted(unique, key=lambda p: (p.file, p.line or 0))
