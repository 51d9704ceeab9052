"""YAML with line numbers: the data, and the line of every key and list item in it.

Parsed once, with libyaml when it is installed (PyYAML's C loader; the pure-Python one
otherwise), and bounded: nesting deeper than `MAX_DEPTH`, aliases that expand the document
beyond `MAX_VALUES` values ("billion laughs") or that refer to themselves are refused with
the line where it happens, before anything walks the data recursively.

Lines are counted as editors count them, on `\\n` only: YAML 1.1 (and so libyaml) also
breaks lines at U+0085, U+2028 and U+2029, which would shift every later line number and
end a comment in the middle. Those characters are parsed as ordinary characters instead.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

import yaml

Path_ = tuple[Any, ...]
MAX_DEPTH = 64  # mappings and lists inside each other
MAX_VALUES = 1_000_000  # values in the document once its aliases are expanded
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_BREAKS = {"\u0085": "\ue085", "\u2028": "\ue028", "\u2029": "\ue029"}  # -> private-use stand-ins
_RESTORE = str.maketrans({v: k for k, v in _BREAKS.items()})


@dataclass
class Document:
    data: Any
    lines: dict[Path_, int] = field(default_factory=dict)
    duplicates: list[tuple[Path_, int, int]] = field(default_factory=list)

    def line_of(self, path: Path_) -> int | None:
        """The line of `path`, or of its nearest ancestor that has one."""
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), None)


class YamlSyntaxError(Exception):
    def __init__(self, message: str, line: int | None):
        self.line = line
        super().__init__(message)


class _Lines:
    """Character index -> 1-based line, counting `\\n` only."""

    def __init__(self, text: str):
        self.starts = [i for i, c in enumerate(text) if c == "\n"]

    def __call__(self, mark: Any) -> int:
        return bisect.bisect_left(self.starts, mark.index) + 1


def parse(text: str) -> Document:
    """Parse one YAML document safely, keeping 1-based lines; raise YamlSyntaxError."""
    lines = _Lines(text)
    if "\0" in text:
        raise YamlSyntaxError("the file holds a NUL byte (it looks binary)", text[:text.index("\0")].count("\n") + 1)
    breaks = [c for c in _BREAKS if c in text] if not any(v in text for v in _BREAKS.values()) else []
    for char in breaks:
        text = text.replace(char, _BREAKS[char])
    try:
        _check_depth(text, lines)
        loader = _LOADER(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = exc.problem or "invalid YAML"
        if exc.context:
            what = f"{what} ({exc.context})"
        raise YamlSyntaxError(what, lines(mark) if mark else None) from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(str(exc), None) from None
    document = Document(data=data)
    if node is not None:
        _check_expansion(node, lines)
        document.lines[()] = lines(node.start_mark)
        _walk(node, document, lines)
    if breaks:
        document.data = _restore(document.data)
    return document


def _check_depth(text: str, lines: _Lines) -> None:
    """Refuse deep nesting from the event stream (flat, not recursive), before composing."""
    depth = 0
    for event in yaml.parse(text, Loader=_LOADER):
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise YamlSyntaxError(f"mappings and lists are nested more than {MAX_DEPTH} levels deep",
                                      lines(event.start_mark))
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_expansion(root: yaml.Node, lines: _Lines) -> None:
    """The document's size once its aliases are expanded, computed on the graph of distinct
    nodes (an alias is a second edge to a node, so this is linear however big the expansion):
    refuse a node that contains itself, or a document beyond MAX_VALUES values."""
    size: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, leaving = stack.pop()
        key = id(node)
        if leaving:
            on_path.discard(key)
            size[key] = 1 + sum(size[id(child)] for child in _children(node))
            if size[key] > MAX_VALUES:
                raise YamlSyntaxError(f"aliases expand the document beyond {MAX_VALUES:,} values; "
                                      "use fewer nested aliases", lines(node.start_mark))
            continue
        if key in size:
            continue
        if key in on_path:
            raise YamlSyntaxError("an alias refers to the mapping or list that contains it", lines(node.start_mark))
        on_path.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in size)


def _walk(root: yaml.Node, document: Document, lines: _Lines) -> None:
    """Record the line of every key and item, without recursion (the document is known to be
    finite and at most MAX_VALUES values)."""
    stack: list[tuple[yaml.Node, Path_]] = [(root, ())]
    while stack:
        node, path = stack.pop()
        if not isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
            continue
        children: list[tuple[yaml.Node, Path_]] = []
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, value_node in node.value:
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
                if key is None:
                    continue
                key = key.translate(_RESTORE)
                line = lines(key_node.start_mark)
                if key in seen:
                    document.duplicates.append((path + (key,), seen[key], line))
                seen[key] = line
                document.lines[path + (key,)] = line
                children.append((value_node, path + (key,)))
        else:
            for index, item in enumerate(node.value):
                document.lines[path + (index,)] = lines(item.start_mark)
                children.append((item, path + (index,)))
        stack.extend(reversed(children))


def _restore(value: Any) -> Any:
    """Put back the line-separator characters in the parsed strings (without recursion)."""
    if isinstance(value, str):
        return value.translate(_RESTORE)
    root = [value]
    stack: list[Any] = [root]
    seen: set[int] = set()
    while stack:
        container = stack.pop()
        if id(container) in seen:
            continue
        seen.add(id(container))
        items = list(container.items()) if isinstance(container, dict) else list(enumerate(container))
        for key, item in items:
            if isinstance(item, str):
                item = item.translate(_RESTORE)
            elif isinstance(item, (dict, list)):
                stack.append(item)
            if isinstance(container, dict) and isinstance(key, str) and key != key.translate(_RESTORE):
                del container[key]
                container[key.translate(_RESTORE)] = item
            else:
                container[key] = item
    return root[0]
