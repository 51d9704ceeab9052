"""The step cache key: small Prefect cache policies, one per thing that can change an answer.

A step's policy is `StepDefinition()` plus the parts its `cache: {key: [...]}` names (all of
them by default), joined with Prefect's `+`:

    StepDefinition() + Inputs() + AgentConfig() + Commit() + Files()

Each part reads its piece of the call's `CallKey` (tasks/request.py), which the flow fills
before it submits the call (the digests once per call, the repository state once per run,
the files' hashes once per call): computing a key in Prefect's task engine does no I/O. A
part that the call does not carry raises rather than quietly leaving itself out of the key.
A request without a `CallKey` (a skipped step, an assert) gives no key: it is not cached.

Each part also says what changed between two of its components (`explain`), so that
`agentflow plan` explains a miss by asking the same policies that made the key. Nothing
secret goes into a key: requests and agent configurations hold no credentials.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from prefect.cache_policies import CachePolicy
from prefect.utilities.annotations import quote
from prefect.utilities.hashing import hash_objects

from agentflow.errors import AgentflowError
from agentflow.tasks.request import AgentRequest, CallKey

KEY_PARTS = ("inputs", "files", "commit", "agent")  # what `cache: {key: [...]}` may name


class MissingKeyPart(AgentflowError):
    """A cache policy needs a part of the call's key that the flow did not fill in."""


def _request(inputs: dict[str, Any]) -> AgentRequest | None:
    request = inputs.get("request")
    if isinstance(request, quote):
        request = request.unquote()
    return request if isinstance(request, AgentRequest) else None


@dataclass
class KeyPart(CachePolicy):
    """One part of a step's cache key: `component` is what it hashes, and what it explains."""

    name: ClassVar[str] = ""

    def component(self, key: CallKey, request: AgentRequest) -> Any:
        raise NotImplementedError

    def compute_key(self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any],
                    **kwargs: Any) -> str | None:
        request = _request(inputs)
        if request is None or request.key is None:
            return None
        return hash_objects(self.name, self.hashed(self.component(request.key, request)), raise_on_failure=True)

    def hashed(self, component: Any) -> Any:
        """What of the component goes into the key (all of it, unless a part says otherwise)."""
        return component

    def explain(self, old: Any, new: Any) -> str:
        return f"{self.name} changed"


@dataclass
class StepDefinition(KeyPart):
    """The workflow and the step as written: always part of the key."""

    name: ClassVar[str] = "step"

    def component(self, key: CallKey, request: AgentRequest) -> Any:
        return {"workflow": key.workflow, "step": key.step}

    def explain(self, old: Any, new: Any) -> str:
        return "the step's definition changed"


@dataclass
class Inputs(KeyPart):
    """What the agent is given: the rendered prompt, parameters, command, item."""

    name: ClassVar[str] = "inputs"

    def component(self, key: CallKey, request: AgentRequest) -> Any:
        return key.request

    def explain(self, old: Any, new: Any) -> str:
        return "the rendered request changed"


@dataclass
class AgentConfig(KeyPart):
    name: ClassVar[str] = "agent"

    def component(self, key: CallKey, request: AgentRequest) -> Any:
        return key.agent

    def explain(self, old: Any, new: Any) -> str:
        return "the agent's configuration changed"


@dataclass
class Commit(KeyPart):
    """The tree the step sees: the commit the run pinned, the patch of uncommitted changes it
    started from, and the patches of the steps before it, in order (engine/run_workspace.py),
    all content-addressed; not the live working tree, so a file nothing declares and nothing
    wrote changes no key. Outside git: the commit is None, and why."""

    name: ClassVar[str] = "commit"

    def component(self, key: CallKey, request: AgentRequest) -> Any:
        if key.repo is None:
            raise MissingKeyPart(f"step `{request.step}`: the repository state was not read for its cache key")
        return key.repo

    def hashed(self, component: Any) -> Any:
        # `from` names the steps whose patches these are: for `plan` to explain a miss; the
        # tree is the same whatever the steps are called.
        return {k: v for k, v in component.items() if k != "from"} if isinstance(component, dict) else component

    def explain(self, old: Any, new: Any) -> str:
        old, new = old or {}, new or {}
        if old.get("commit") != new.get("commit"):
            return f"commit {_short(old.get('commit'))} -> {_short(new.get('commit'))}"
        if old.get("start") != new.get("start"):
            return ("the uncommitted changes the run started from differ" if new.get("start")
                    else "the run started from a clean tree now")
        if "patches" not in old:
            return "the tree is now keyed by the patches of the steps before it"
        return _patches_differ(old, new)


@dataclass
class Files(KeyPart):
    """The content of the files the step's `files:` globs match."""

    name: ClassVar[str] = "files"

    def component(self, key: CallKey, request: AgentRequest) -> Any:
        if key.files is None:
            raise MissingKeyPart(f"step `{request.step}`: its files were not hashed for its cache key")
        return key.files

    def explain(self, old: Any, new: Any) -> str:
        old, new = old or {}, new or {}
        changed = sorted(f for f in set(old) | set(new) if old.get(f) != new.get(f))
        return "files changed: " + ", ".join(changed[:5]) + (" ..." if len(changed) > 5 else "")


_PARTS: dict[str, type[KeyPart]] = {"inputs": Inputs, "agent": AgentConfig, "commit": Commit, "files": Files}


def step_policy(parts: tuple[str, ...] = KEY_PARTS) -> CachePolicy:
    """The cache policy of a step whose key uses `parts` (besides its definition, always)."""
    policy: CachePolicy = StepDefinition()
    for name in KEY_PARTS:  # a fixed order: the same parts always make the same key
        if name in parts:
            policy = policy + _PARTS[name]()
    return policy


def parts_of(policy: CachePolicy) -> list[KeyPart]:
    found = getattr(policy, "policies", [policy])
    return [p for p in found if isinstance(p, KeyPart)]


def key_of(policy: CachePolicy, request: AgentRequest) -> str | None:
    """The key Prefect will compute for this call (the same function, called here first)."""
    return policy.compute_key(task_ctx=None, inputs={"request": request}, flow_parameters={})


def components(policy: CachePolicy, request: AgentRequest) -> dict[str, Any]:
    """Each part's component of this call's key, for the cache index (what `plan` compares).
    The inputs part keeps the rendered request itself, so that a miss can say which field."""
    if request.key is None:
        return {}
    found = {part.name: part.component(request.key, request) for part in parts_of(policy)}
    if "inputs" in found:
        found["inputs"] = request.key_view()
    return found


def explain_miss(policy: CachePolicy, before: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """Which parts of the key differ from an earlier entry's, in the parts' own words."""
    reasons = []
    for part in sorted(parts_of(policy), key=lambda p: _EXPLAIN_ORDER.index(p.name)):
        old, new = before.get(part.name), now.get(part.name)
        if old == new:
            continue
        if part.name == "inputs" and isinstance(old, dict) and isinstance(new, dict):
            fields = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            reasons.append("rendered " + ", ".join(fields) + " changed")
        else:
            reasons.append(part.explain(old, new))
    return reasons


_EXPLAIN_ORDER = ["commit", "files", "inputs", "agent", "step"]  # the likeliest cause first


def _patches_differ(old: dict[str, Any], new: dict[str, Any]) -> str:
    """Which earlier step's patch the step saw differently: `saw a different patch from `write``."""
    before, now = list(old.get("patches") or []), list(new.get("patches") or [])
    names_before, names_now = list(old.get("from") or []), list(new.get("from") or [])
    for position in range(max(len(before), len(now))):
        was = before[position] if position < len(before) else None
        is_ = now[position] if position < len(now) else None
        if was != is_:
            step = (names_now[position] if position < len(names_now) and is_ else
                    names_before[position] if position < len(names_before) else "?")
            if was is None:
                return f"saw a patch from `{step}` that it did not see before"
            if is_ is None:
                return f"no longer sees the patch from `{step}`"
            return f"saw a different patch from `{step}`"
    return "the tree it sees differs"


def _short(commit: Any) -> str:
    return str(commit)[:8] if commit else "none"
