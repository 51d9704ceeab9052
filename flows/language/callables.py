"""What a `module:function` named in a definition accepts, when it can be imported now.

A workflow file is trusted code (its `call:` steps run whatever they name), so importing
the module to read the function's signature while checking the definition does nothing a
run would not do. A module that cannot be found here is not an error of the definition:
it may exist where the workflow runs.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect


def accepted_parameters(target: str) -> set[str] | None:
    """The keyword parameters `module:function` takes (all, if it takes **kwargs: None),
    or None if it cannot be imported or inspected here."""
    module_name, _, attribute = target.partition(":")
    try:
        if importlib.util.find_spec(module_name) is None:
            return None
        function = getattr(importlib.import_module(module_name), attribute, None)
        signature = inspect.signature(function) if callable(function) else None
    except Exception:  # noqa: BLE001 - whatever the user's module does on import, the run will report
        return None
    if signature is None:
        return None
    kinds = {p.kind for p in signature.parameters.values()}
    if inspect.Parameter.VAR_KEYWORD in kinds:
        return None
    return {name for name, p in signature.parameters.items()
            if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)}
