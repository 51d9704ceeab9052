"""The safe expression language of `when`, `until`, `gate` and `assert`.

Python's own parser reads the text (`ast.parse` evaluates nothing); a whitelist walker then
rejects every construct it does not know, and a small interpreter evaluates what is left.
Names resolve only to the roots it is given (`inputs`, `steps`, `result`, `item`, …);
`a.b` is a key lookup in a mapping, never a Python attribute, so no object internals are
reachable. Python's `eval` is never used.
"""

from __future__ import annotations

import ast
import operator
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agentflow.errors import ExpressionError

MAX_LENGTH = 2000
MAX_DEPTH = 50  # operators and calls inside each other
_CONSTANT_NAMES = {"true": True, "false": False, "null": None, "none": None,
                   "True": True, "False": False, "None": None}
ROOTS = ("inputs", "steps", "result", "item", "iteration")


def _lower(s: str) -> str:
    return _need(s, str, "lower").lower()


def _upper(s: str) -> str:
    return _need(s, str, "upper").upper()


def _contains(container: Any, part: Any) -> bool:
    return part in container


def _startswith(s: str, prefix: str) -> bool:
    return _need(s, str, "startswith").startswith(prefix)


def _endswith(s: str, suffix: str) -> bool:
    return _need(s, str, "endswith").endswith(suffix)


def _need(value: Any, kind: type, fn: str) -> Any:
    if not isinstance(value, kind):
        raise ExpressionError(f"{fn}() needs a {kind.__name__} (got {type(value).__name__})")
    return value


FUNCTIONS: dict[str, Any] = {
    "len": len, "int": int, "float": float, "str": str, "bool": bool, "abs": abs,
    "min": min, "max": max, "round": round, "lower": _lower, "upper": _upper,
    "contains": _contains, "startswith": _startswith, "endswith": _endswith,
}

_COMPARE = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
}
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv, ast.Mod: operator.mod, ast.FloorDiv: operator.floordiv}


@dataclass(frozen=True)
class Expression:
    """A parsed, checked expression, ready to evaluate against a context."""

    text: str
    tree: ast.Expression

    def evaluate(self, context: Mapping[str, Any]) -> Any:
        try:
            return _Evaluator(context).visit(self.tree.body)
        except ExpressionError:
            raise
        except (TypeError, ValueError, ZeroDivisionError, OverflowError, RecursionError) as exc:
            raise ExpressionError(f"`{self.text}` cannot be evaluated: {exc}") from None

    def step_fields(self) -> set[tuple[str, str]]:
        """The fields of step results it reads: `steps.a.summary` gives ("a", "summary")."""
        return _step_fields(self.tree)

    def references(self, root: str) -> set[str]:
        """Keys used directly under `root`: `steps.a.status` and `steps['a']` give {'a'}."""
        found: set[str] = set()
        for node in ast.walk(self.tree):
            if isinstance(node, (ast.Attribute, ast.Subscript)) and _is_name(node.value, root):
                key = node.attr if isinstance(node, ast.Attribute) else _constant_key(node.slice)
                if isinstance(key, str):
                    found.add(key)
        return found


def _step_fields(tree: ast.AST) -> set[tuple[str, str]]:
    """`steps.a.summary` and `steps['a']['summary']` give ("a", "summary")."""
    found: set[tuple[str, str]] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Attribute, ast.Subscript)) and isinstance(node.value, (ast.Attribute, ast.Subscript)):
            inner = node.value
            if not _is_name(inner.value, "steps"):
                continue
            step = inner.attr if isinstance(inner, ast.Attribute) else _constant_key(inner.slice)
            key = node.attr if isinstance(node, ast.Attribute) else _constant_key(node.slice)
            if isinstance(step, str) and isinstance(key, str):
                found.add((step, key))
    return found


def _is_name(node: ast.AST, name: str) -> bool:
    return isinstance(node, ast.Name) and node.id == name


def _constant_key(node: ast.AST) -> Any:
    return node.value if isinstance(node, ast.Constant) else None


def parse(text: str, roots: Sequence[str] = ROOTS) -> Expression:
    """Parse and check `text`; raise ExpressionError saying what is not allowed."""
    if not isinstance(text, str) or not text.strip():
        raise ExpressionError("an expression must be a non-empty string")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"an expression is limited to {MAX_LENGTH} characters")
    try:
        with warnings.catch_warnings():
            # Python's own lint of odd literals (`1if`) is not for our users' eyes.
            warnings.simplefilter("ignore", SyntaxWarning)
            tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"`{text}` does not parse: {exc.msg}") from None
    except (ValueError, MemoryError, RecursionError):
        raise ExpressionError(f"`{_short(text)}` does not parse: it is nested too deeply "
                              f"(at most {MAX_DEPTH} levels)") from None
    if _depth(tree.body) > MAX_DEPTH:
        raise ExpressionError(f"`{_short(text)}` is nested more than {MAX_DEPTH} levels deep; "
                              "split it, or compute the value in a step")
    _check(tree.body, set(roots), text)
    return Expression(text=text, tree=tree)


def _depth(root: ast.AST) -> int:
    """How deeply the expression nests (without recursion: it may be very deep)."""
    deepest, stack = 0, [(root, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth <= MAX_DEPTH:
            stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return deepest


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= 60 else text[:57] + "..."


def _check(node: ast.AST, roots: set[str], text: str) -> None:
    if isinstance(node, ast.Constant):
        if not isinstance(node.value, (str, int, float, bool, type(None))):
            raise ExpressionError(f"`{text}`: literal {node.value!r} is not allowed")
        return
    if isinstance(node, ast.Name):
        if node.id not in roots and node.id not in _CONSTANT_NAMES:
            allowed = ", ".join(sorted(roots))
            raise ExpressionError(f"`{text}`: unknown name `{node.id}`; use one of {allowed}")
        return
    if isinstance(node, ast.Attribute):
        if node.attr.startswith("_"):
            raise ExpressionError(f"`{text}`: names starting with `_` are not allowed")
        _check(node.value, roots, text)
        return
    if isinstance(node, ast.Subscript):
        if isinstance(node.slice, ast.Slice):
            raise ExpressionError(f"`{text}`: slices are not allowed")
        _check(node.value, roots, text)
        _check(node.slice, roots, text)
        return
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            known = ", ".join(sorted(FUNCTIONS))
            raise ExpressionError(f"`{text}`: only these functions can be called: {known}")
        if node.keywords:
            raise ExpressionError(f"`{text}`: keyword arguments are not allowed")
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                raise ExpressionError(f"`{text}`: `*` arguments are not allowed")
            _check(arg, roots, text)
        return
    if isinstance(node, ast.BoolOp):
        for value in node.values:
            _check(value, roots, text)
        return
    if isinstance(node, ast.UnaryOp):
        if not isinstance(node.op, (ast.Not, ast.USub, ast.UAdd)):
            raise ExpressionError(f"`{text}`: operator {type(node.op).__name__} is not allowed")
        _check(node.operand, roots, text)
        return
    if isinstance(node, ast.BinOp):
        if type(node.op) not in _BINARY:
            raise ExpressionError(f"`{text}`: operator {type(node.op).__name__} is not allowed")
        _check(node.left, roots, text)
        _check(node.right, roots, text)
        return
    if isinstance(node, ast.Compare):
        for op in node.ops:
            if type(op) not in _COMPARE:
                raise ExpressionError(f"`{text}`: comparison {type(op).__name__} is not allowed")
        for part in [node.left, *node.comparators]:
            _check(part, roots, text)
        return
    if isinstance(node, (ast.List, ast.Tuple)):
        for element in node.elts:
            if isinstance(element, ast.Starred):
                raise ExpressionError(f"`{text}`: `*` is not allowed")
            _check(element, roots, text)
        return
    if isinstance(node, ast.IfExp):
        for part in (node.test, node.body, node.orelse):
            _check(part, roots, text)
        return
    raise ExpressionError(f"`{text}`: {type(node).__name__} is not allowed in an expression")


class _Evaluator:
    def __init__(self, context: Mapping[str, Any]):
        self.context = context

    def visit(self, node: ast.AST) -> Any:
        method = getattr(self, f"_{type(node).__name__}")
        return method(node)

    def _Constant(self, node: ast.Constant) -> Any:
        return node.value

    def _Name(self, node: ast.Name) -> Any:
        if node.id in self.context:
            return self.context[node.id]
        if node.id in _CONSTANT_NAMES:
            return _CONSTANT_NAMES[node.id]
        raise ExpressionError(f"`{node.id}` is not available here")

    def _Attribute(self, node: ast.Attribute) -> Any:
        return _lookup(self.visit(node.value), node.attr, ast.unparse(node.value))

    def _Subscript(self, node: ast.Subscript) -> Any:
        return _lookup(self.visit(node.value), self.visit(node.slice), ast.unparse(node.value))

    def _Call(self, node: ast.Call) -> Any:
        args = [self.visit(a) for a in node.args]
        return FUNCTIONS[node.func.id](*args)

    def _BoolOp(self, node: ast.BoolOp) -> Any:
        if isinstance(node.op, ast.And):
            value: Any = True
            for part in node.values:
                value = self.visit(part)
                if not value:
                    return value
            return value
        value = False
        for part in node.values:
            value = self.visit(part)
            if value:
                return value
        return value

    def _UnaryOp(self, node: ast.UnaryOp) -> Any:
        value = self.visit(node.operand)
        if isinstance(node.op, ast.Not):
            return not value
        _need_number(value)
        return -value if isinstance(node.op, ast.USub) else +value

    def _BinOp(self, node: ast.BinOp) -> Any:
        left, right = self.visit(node.left), self.visit(node.right)
        if not isinstance(node.op, ast.Add):
            # Only `+` joins strings or lists; the rest needs numbers, so that `"x" * 10**9` or
            # `"%s" % x` cannot be used to exhaust memory or format objects. Only numbers multiply: `"x" * 10**9` must not be a way to exhaust memory.
            _need_number(left)
            _need_number(right)
        return _BINARY[type(node.op)](left, right)

    def _Compare(self, node: ast.Compare) -> bool:
        left = self.visit(node.left)
        for op, comparator in zip(node.ops, node.comparators):
            right = self.visit(comparator)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True

    def _List(self, node: ast.List) -> list:
        return [self.visit(e) for e in node.elts]

    def _Tuple(self, node: ast.Tuple) -> list:
        return [self.visit(e) for e in node.elts]

    def _IfExp(self, node: ast.IfExp) -> Any:
        return self.visit(node.body) if self.visit(node.test) else self.visit(node.orelse)


def _need_number(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ExpressionError(f"arithmetic needs numbers (got {type(value).__name__})")


def _lookup(container: Any, key: Any, where: str) -> Any:
    if isinstance(container, Mapping):
        if key in container:
            return container[key]
        known = ", ".join(sorted(str(k) for k in container)) or "nothing"
        raise ExpressionError(f"`{where}` has no `{key}`; it has: {known}")
    if isinstance(container, (list, tuple, str)) and isinstance(key, int) and not isinstance(key, bool):
        try:
            return container[key]
        except IndexError:
            raise ExpressionError(f"`{where}[{key}]` is out of range (length {len(container)})") from None
    raise ExpressionError(f"`{where}` is {type(container).__name__}; it has no `{key}`")


def evaluate(text: str, context: Mapping[str, Any]) -> Any:
    """Parse and evaluate in one go (for one-off uses; steps parse once at compile time)."""
    return parse(text, roots=tuple(context) or ROOTS).evaluate(context)
