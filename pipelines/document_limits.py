"""Bounds on the documents this package reads: depth, node count and YAML aliases.

A document is a tree of JSON values. Three limits keep a hostile one cheap to refuse:

- ``max_depth``: how deeply mappings and lists nest (the top level is depth 0);
- ``max_nodes``: how many values the tree holds once YAML aliases are expanded (every mapping,
  list, key and scalar counts one);
- ``max_alias_nodes``: how many values YAML aliases may add in all. Aliases are allowed, so that
  a retry policy or a config block can be written once and reused, but each ``*alias`` costs the
  size of what it expands to. A "billion laughs" document (nine anchors, each a list of nine
  aliases to the one before) needs 9**9 values from 593 bytes; three levels of it already add
  909, beyond the default budget of 500. An alias to the node that contains it is refused too:
  the result would be infinite.

``bounded_yaml_loader`` gives a loader that checks all three while PyYAML composes the node graph, before a single
Python object is built, so a bomb is refused after reading its few hundred bytes.
``check_value`` checks depth and node count of values parsed another way (JSON) without
recursion. Both raise ``DocumentLimitError`` naming the limit and the path where it was crossed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml
import yaml.composer
import yaml.constructor
import yaml.parser
import yaml.reader
import yaml.resolver
import yaml.scanner

from pipelines.errors import DocumentLimitError


@dataclass(frozen=True)
class DocumentLimits:
    """The bounds one document must fit in; the defaults are what the control plane ships with."""

    max_depth: int = 64
    max_nodes: int = 200_000
    max_alias_nodes: int = 500

    def refuse(self, limit: str, path: str, what: str) -> DocumentLimitError:
        value = getattr(self, limit)
        return DocumentLimitError(limit=limit, value=value, path=path, message=f"{what} (limit {limit}={value})")


DEFAULT_LIMITS = DocumentLimits()


def join_path(parent: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else str(key)


def check_value(value: Any, limits: DocumentLimits = DEFAULT_LIMITS, *, path: str = "") -> None:
    """Raise ``DocumentLimitError`` if ``value`` nests deeper or holds more values than allowed."""
    # An explicit stack: a recursive walk would itself fail on the deep documents it must refuse.
    # Each entry keeps its parent so a path is spelled out only for the value that crossed a limit.
    stack: list[tuple[Any, int, Any, tuple | None]] = [(value, 0, None, None)]
    nodes = 0
    while stack:
        entry = stack.pop()
        item, depth, _key, _parent = entry
        nodes += 1
        if nodes > limits.max_nodes:
            raise limits.refuse("max_nodes", _entry_path(entry, path), f"the document holds more than {limits.max_nodes} values")
        if depth > limits.max_depth:
            raise limits.refuse(
                "max_depth", _entry_path(entry, path), f"nested deeper than {limits.max_depth} levels; flatten the document"
            )
        if isinstance(item, dict):
            nodes += len(item)  # a mapping's keys are values too, as YAML counts them
            children = item.items()
        elif isinstance(item, (list, tuple)):
            children = enumerate(item)
        else:
            continue
        for key, child in children:
            stack.append((child, depth + 1, key, entry))


def _entry_path(entry: tuple, root: str) -> str:
    keys = []
    while entry is not None and entry[3] is not None:
        keys.append(entry[2])
        entry = entry[3]
    path = root
    for key in reversed(keys):
        path = join_path(path, key)
    return path


class PythonEvents(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser):
    """PyYAML's own reader, scanner and parser: the events of a document, in Python."""

    def __init__(self, stream):
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)


EVENT_SOURCES: dict[str, type] = {"python": PythonEvents}
try:
    # libyaml's scanner, in C. PyYAML's own is quadratic in flow nesting ("[[[[..."): it spends half
    # a second on the first thousand brackets of a body before the composer can refuse the depth.
    from yaml._yaml import CParser

    EVENT_SOURCES["libyaml"] = CParser
except ImportError:  # PyYAML built without libyaml: as correct, only slower on hostile input
    pass
DEFAULT_EVENTS = "libyaml" if "libyaml" in EVENT_SOURCES else "python"


class BoundedYAMLLoader(yaml.composer.Composer):
    """A safe loader refusing documents beyond ``limits`` while it composes them.

    ``bounded_yaml_loader`` completes it with an event source (libyaml when PyYAML has it),
    PyYAML's safe constructor and resolver; composing stays in Python, where the limits are
    counted.
    """

    limits: DocumentLimits = DEFAULT_LIMITS
    events: type = EVENT_SOURCES[DEFAULT_EVENTS]

    def __init__(self, stream):
        self.events.__init__(self, stream)
        yaml.composer.Composer.__init__(self)
        yaml.constructor.SafeConstructor.__init__(self)
        yaml.resolver.Resolver.__init__(self)
        self._depth = 0
        self._nodes = 0
        self._alias_nodes = 0
        self._path: list[str] = [""]
        self._open_anchors: set[str] = set()
        self._sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (values, height) once expanded

    def compose_node(self, parent, index):
        path = self._child_path(parent, index)
        if self.check_event(yaml.AliasEvent):
            self._charge_alias(self.peek_event(), path)
            return super().compose_node(parent, index)
        if self._depth > self.limits.max_depth:
            raise self.limits.refuse("max_depth", path, f"nested deeper than {self.limits.max_depth} levels; flatten the document")
        self._count(1, path)
        anchor = self.peek_event().anchor
        if anchor is not None:
            self._open_anchors.add(anchor)
        self._depth += 1
        self._path.append(path)
        try:
            return super().compose_node(parent, index)
        finally:
            self._path.pop()
            self._depth -= 1
            if anchor is not None:
                self._open_anchors.discard(anchor)

    def _child_path(self, parent, index) -> str:
        here = self._path[-1]
        if parent is None:
            return here
        if isinstance(index, int):
            return join_path(here, index)
        if isinstance(index, yaml.ScalarNode):
            return join_path(here, index.value)
        return here  # a mapping key: located by its mapping

    def _charge_alias(self, event, path: str) -> None:
        if event.anchor in self._open_anchors:
            raise self.limits.refuse("max_depth", path, f"alias *{event.anchor} refers to a node that contains it; the document would be infinite")
        target = self.anchors.get(event.anchor)
        if target is None:
            return  # PyYAML reports the undefined alias itself
        values, height = self._expanded(target)
        self._alias_nodes += values
        if self._alias_nodes > self.limits.max_alias_nodes:
            raise self.limits.refuse(
                "max_alias_nodes", path,
                f"YAML aliases expand to more than {self.limits.max_alias_nodes} values; write the repeated parts out or shorten them",
            )
        if self._depth + height > self.limits.max_depth + 1:
            raise self.limits.refuse("max_depth", path, f"alias *{event.anchor} nests deeper than {self.limits.max_depth} levels")
        self._count(values, path)

    def _count(self, values: int, path: str) -> None:
        self._nodes += values
        if self._nodes > self.limits.max_nodes:
            raise self.limits.refuse("max_nodes", path, f"the document holds more than {self.limits.max_nodes} values")

    def _expanded(self, node) -> tuple[int, int]:
        """(values, height) of ``node`` with its aliases expanded, each node measured once."""
        known = self._sizes.get(id(node))
        if known is not None:
            return known
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        else:
            children = []
        values, height = 1, 1
        for child in children:
            child_values, child_height = self._expanded(child)
            values += child_values
            height = max(height, child_height + 1)
        self._sizes[id(node)] = (values, height)
        return values, height


_LOADERS: dict[tuple[DocumentLimits, bool, str], type] = {}

_RESOLVERS_WITHOUT_DATES = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def bounded_yaml_loader(
    limits: DocumentLimits = DEFAULT_LIMITS, *, dates_as_text: bool = True, events: str = DEFAULT_EVENTS
) -> type:
    """The loader class for ``limits``, one class per distinct arguments.

    ``dates_as_text`` keeps ``2024-01-01`` a string, because JSON (and the canonical digest)
    cannot hold a date; without it dates load as ``yaml.safe_load`` loads them. ``events`` names
    the event source (``EVENT_SOURCES``).
    """
    key = (limits, dates_as_text, events)
    if key not in _LOADERS:
        source = EVENT_SOURCES[events]
        attrs: dict[str, Any] = {"limits": limits, "events": source}
        if dates_as_text:
            attrs["yaml_implicit_resolvers"] = _RESOLVERS_WITHOUT_DATES
        bases = (BoundedYAMLLoader, source, yaml.constructor.SafeConstructor, yaml.resolver.Resolver)
        _LOADERS[key] = type("BoundedYAMLLoader", bases, attrs)
    return _LOADERS[key]


def load_yaml(text: str, limits: DocumentLimits = DEFAULT_LIMITS, *, dates_as_text: bool = True) -> Any:
    """Parse YAML text within ``limits``; raises ``yaml.YAMLError`` or ``DocumentLimitError``."""
    try:
        return yaml.load(text, Loader=bounded_yaml_loader(limits, dates_as_text=dates_as_text))
    except yaml.scanner.ScannerError as exc:
        if exc.problem != "exceeded maximum nesting depth":  # libyaml's own bound, past ours
            raise
        raise limits.refuse("max_depth", "", f"nested deeper than {limits.max_depth} levels; flatten the document") from None
