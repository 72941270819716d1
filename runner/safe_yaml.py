"""YAML from a user (a spec file, standard input, a --set value) loaded with bounds, so bad
input costs a one-line ConfigError, never a traceback, a hang or gigabytes.

PyYAML's SafeLoader builds no objects of arbitrary classes but is otherwise unbounded: a
418-byte "billion laughs" document (nine aliases of nine aliases ...) expands to 9^9
strings once anything walks it (3 GB to print it in an error message), a 20,000-deep
`[[[...]]]` recurses past Python's stack, a repeated key silently keeps the last value and
non-UTF-8 bytes raise UnicodeDecodeError. This loader refuses each of them while loading.
"""

from __future__ import annotations

from typing import Any

import yaml

from plasticity_core.errors import ConfigError, brief, clip

MAX_BYTES = 1 << 20
"""Largest document, bytes (the biggest preset is ~1 KB)."""
MAX_DEPTH = 50
"""Deepest nesting of mappings and sequences, aliases expanded (a spec needs ~4)."""
MAX_ALIASES = 100
"""Alias uses (`*name`) in one document."""
MAX_NODES = 20_000
"""Keys and values of one document, aliases expanded (a preset has ~100): the bound that
stops a bomb, whose few aliases each repeat the ones before them, and keeps the pure-Python
parser's work under a second."""
MERGE = "tag:yaml.org,2002:merge"


class Refused(yaml.YAMLError):
    """A document this loader will not build; the message is one line."""


class BoundedLoader(yaml.SafeLoader):
    """SafeLoader that counts while composing (nesting depth, alias uses, nodes with aliases
    expanded) and refuses a mapping that repeats a key, naming it and both lines."""

    def compose_document(self) -> yaml.Node | None:
        self._depth, self._aliases, self._nodes = 0, 0, 0
        self._size: dict[yaml.Node, tuple[int, int]] = {}  # node -> (nodes, height) expanded
        return super().compose_document()

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            self._count_alias(event)
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise Refused(f"nested more than {MAX_DEPTH} deep at {_at(event.start_mark)}")
        self._count(1, event)
        node = super().compose_node(parent, index)
        self._depth -= 1
        self._size[node] = _measure(node, self._size)
        return node

    def _count(self, nodes: int, event: yaml.Event) -> None:
        self._nodes += nodes
        if self._nodes > MAX_NODES:
            raise Refused(f"more than {MAX_NODES:,} keys and values (aliases expanded) at "
                          f"{_at(event.start_mark)}")  # fmt: skip

    def _count_alias(self, event: yaml.AliasEvent) -> None:
        at = _at(event.start_mark)
        self._aliases += 1
        if self._aliases > MAX_ALIASES:
            raise Refused(f"more than {MAX_ALIASES} aliases (*name) at {at}")
        target = self.anchors.get(event.anchor)
        if target is None:
            return  # undefined: the composer says so
        if target not in self._size:
            raise Refused(f"alias *{event.anchor[:40]} inside its own anchor at {at}")
        nodes, height = self._size[target]
        self._count(nodes, event)
        if self._depth + height > MAX_DEPTH:
            raise Refused(f"nested more than {MAX_DEPTH} deep (through an alias) at {at}")

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        first: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == MERGE:
                continue  # `<<: *base` then an explicit key overrides, as YAML means it
            key = self.construct_object(key_node, deep=True)
            try:
                earlier = first.setdefault(key, key_node)
            except TypeError:
                continue  # unhashable: the constructor says so
            if earlier is not key_node:
                at, line = _at(key_node.start_mark), earlier.start_mark.line + 1
                raise Refused(f"duplicate key {brief(key)} at {at} (first at line {line})")
        return super().construct_mapping(node, deep=deep)


def _measure(node: yaml.Node, size: dict[yaml.Node, tuple[int, int]]) -> tuple[int, int]:
    """(nodes, height) of `node` with aliases expanded; its children are measured."""
    if isinstance(node, yaml.ScalarNode):
        return 1, 1
    children = node.value if isinstance(node, yaml.SequenceNode) else [
        child for pair in node.value for child in pair]  # fmt: skip
    measured = [size[child] for child in children]
    return 1 + sum(n for n, _ in measured), 1 + max((h for _, h in measured), default=0)


def load_yaml(document: str | bytes, source: str) -> Any:
    """The one YAML document in `document` (UTF-8 bytes or text) as plain Python values;
    raises ConfigError, one line starting with `source`, for anything this module refuses
    or that is not valid YAML."""
    if len(document) > MAX_BYTES:
        raise ConfigError(f"{source}: larger than {MAX_BYTES:,} bytes; a spec is a few KB")
    if isinstance(document, bytes):
        document = _decode(document, source)
    try:
        return yaml.load(document, Loader=BoundedLoader)
    except Refused as err:
        raise ConfigError(f"{source}: {err}") from None
    except yaml.MarkedYAMLError as err:
        what = "; ".join(p for p in (err.context, err.problem) if p)
        where = f" at {_at(err.problem_mark)}" if err.problem_mark else ""
        raise ConfigError(f"{source}: not valid YAML{where}: {_clip(what)}") from None
    except yaml.reader.ReaderError as err:
        raise ConfigError(f"{source}: not valid YAML: character #x{err.character:04x} at "
                          f"offset {err.position} is not allowed") from None  # fmt: skip
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: not valid YAML: {_clip(str(err))}") from None


def _decode(document: bytes, source: str) -> str:
    try:
        return document.decode("utf-8")
    except UnicodeDecodeError as err:
        line = document.count(b"\n", 0, err.start) + 1
        raise ConfigError(
            f"{source}: not UTF-8 text: byte 0x{document[err.start]:02x} at offset "
            f"{err.start} (line {line}); save the file as UTF-8"
        ) from None


def _at(mark: yaml.Mark) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}"


def _clip(text: str, limit: int = 160) -> str:
    """One line of at most `limit` characters (PyYAML's messages quote the input)."""
    return clip(" ".join(text.split()), limit)
