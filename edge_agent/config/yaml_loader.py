"""A YAML reader for config files that cannot be made to crash, hang or eat memory.

PyYAML's SafeLoader is safe from code execution but not from the rest: a 544-byte alias
bomb expands to gigabytes in validation, 500 nested brackets raise RecursionError, and
`!!int x`, `!!float ''`, `!!timestamp 2026-13-45` or a 4,301-digit number raise plain
Python exceptions. `StrictLoader` bounds nesting while composing, `measure` bounds what
aliases expand to before anything is built from the tree, and every scalar is
constructed strictly: a value that cannot be read becomes a `MarkedYAMLError` with its
line, like any syntax error.

Scalars follow YAML 1.2's core schema for numbers (no sexagesimal `1:30` = 90, no octal
`0755`, no dates) but keep YAML 1.1's booleans (`yes`, `no`, `on`, `off`, `y`, `n`),
so that a field meant as text or a number can refuse them by name (see config_rules).
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError

MAX_FILE_BYTES = 128 * 1024
"""A config with 100 cameras is ~20 KB; the pure-Python parser reads 128 KiB in < 1 s."""
MAX_DEPTH = 32
"""Nesting levels, counted after aliases are expanded; the agent's config needs 5."""
MAX_NODES = 5_000
"""Values in the document, as written and after aliases are expanded (keys, values and
list items); 100 cameras with every key set are about 2,000."""
MAX_NUMBER_DIGITS = 40

TAG = "tag:yaml.org,2002:"
ALLOWED_TAGS = {TAG + name: noun for name, noun in (
    ("str", "text"), ("int", "a whole number"), ("float", "a number"),
    ("bool", "true or false"), ("null", "nothing"), ("seq", "a list"), ("map", "a section"),
)}
INT = re.compile(r"^(?:[-+]?[0-9][0-9_]*|[-+]?0b[01_]+|[-+]?0o[0-7_]+|[-+]?0x[0-9a-fA-F_]+)$")
FLOAT = re.compile(
    r"^(?:[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+"
    r"|[-+]?\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)
_REPLACED = {TAG + name for name in ("int", "float", "timestamp", "value", "yaml")}


class StrictLoader(yaml.SafeLoader):
    """SafeLoader with a nesting limit, strict scalars and only the plain YAML types."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        self._nodes += 1
        try:
            if self._nodes > MAX_NODES:
                raise ComposerError(
                    None, None, f"more than {MAX_NODES} values in the file; a config has a "
                    "few hundred (is this the right file?)", self.peek_event().start_mark,
                )
            if self._depth > MAX_DEPTH:
                raise ComposerError(
                    None, None,
                    f"nested more than {MAX_DEPTH} levels deep; the config needs at most 5",
                    self.peek_event().start_mark,
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        if node.tag not in ALLOWED_TAGS:
            raise ConstructorError(
                None, None,
                f"the tag {_short_tag(node.tag)} is not allowed in the config; allowed: "
                "!!str, !!int, !!float, !!bool, !!null, or none (write dates as text)",
                node.start_mark,
            )
        try:
            return super().construct_object(node, deep)
        except yaml.MarkedYAMLError:
            raise
        except Exception:  # ValueError, KeyError, IndexError, OverflowError ...
            value = node.value if isinstance(node.value, str) else ""
            shown = repr(value if len(value) <= 40 else value[:37] + "...")
            raise ConstructorError(
                None, None,
                f"cannot read {shown} as {ALLOWED_TAGS[node.tag]}",
                node.start_mark,
            ) from None

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        """Decimal (leading zeros are decimal), 0b, 0o or 0x; never octal by a leading 0."""
        text = str(self.construct_scalar(node)).replace("_", "")
        digits = text.lstrip("+-")
        if len(digits) > MAX_NUMBER_DIGITS:
            raise ConstructorError(
                None, None,
                f"a number with {len(digits)} digits; allowed: at most {MAX_NUMBER_DIGITS}",
                node.start_mark,
            )
        sign = -1 if text.startswith("-") else 1
        prefix = digits[:2].lower()
        base = {"0b": 2, "0o": 8, "0x": 16}.get(prefix)
        return sign * (int(digits[2:], base) if base else int(digits, 10))

    def construct_yaml_float(self, node: yaml.ScalarNode) -> float:
        text = str(self.construct_scalar(node))
        if len(text) > MAX_NUMBER_DIGITS + 10:
            raise ConstructorError(
                None, None, f"a number {len(text)} characters long; allowed: at most "
                f"{MAX_NUMBER_DIGITS + 10}", node.start_mark,
            )
        return float(super().construct_yaml_float(node))


StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _REPLACED]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
StrictLoader.add_implicit_resolver(TAG + "float", FLOAT, list("-+0123456789."))
StrictLoader.add_implicit_resolver(TAG + "int", INT, list("-+0123456789"))
StrictLoader.add_constructor(TAG + "int", StrictLoader.construct_yaml_int)
StrictLoader.add_constructor(TAG + "float", StrictLoader.construct_yaml_float)


def _short_tag(tag: str | None) -> str:
    return "!!" + tag[len(TAG):] if tag and tag.startswith(TAG) else str(tag)


class TooBigError(Exception):
    """What aliases expand to is over a limit, or an alias holds itself."""

    def __init__(self, node: yaml.Node, problem: str) -> None:
        super().__init__(problem)
        self.line = node.start_mark.line + 1
        self.problem = problem


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def measure(root: yaml.Node) -> None:
    """Refuse a tree that aliases expand beyond MAX_NODES values or MAX_DEPTH levels.

    The composed tree shares one node per anchor, so this walk is linear in the file
    while it computes what every consumer (construction, `${VAR}` expansion,
    validation) would see expanded. It is iterative: depth costs no Python stack.
    """
    sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (values, levels) when expanded
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        children = _children(node)
        if finished:
            open_nodes.discard(key)
            size = 1 + sum(sizes[id(child)][0] for child in children)
            depth = 1 + max((sizes[id(child)][1] for child in children), default=0)
            sizes[key] = (size, depth)
            if size > MAX_NODES:
                raise TooBigError(node, f"aliases expand this to more than {MAX_NODES} values "
                                  "(an alias bomb?); write the values out or use fewer aliases")
            if depth > MAX_DEPTH:
                raise TooBigError(node, f"aliases nest this more than {MAX_DEPTH} levels deep")
            continue
        if key in sizes:
            continue
        open_nodes.add(key)
        stack.append((node, True))
        for child in children:
            if id(child) in open_nodes:
                raise TooBigError(child, "an alias refers to the section that holds it")
            if id(child) not in sizes:
                stack.append((child, False))
