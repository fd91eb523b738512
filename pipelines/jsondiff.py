"""Where two JSON values differ, as JSONPath-like paths (`$.items[2].id`), for the execution diff.

Pure: the standard library only. Objects are compared key by key (sorted), arrays index by index
(extra items on either side are differences at their index), scalars by JSON type and value:
`1` and `1.0` are the same number, `1` and `true` differ.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_PATHS = 200


@dataclass(frozen=True)
class JsonDiff:
    """The differing paths, in document order, at most `MAX_PATHS` of them (`truncated` if more)."""

    paths: tuple[str, ...]
    truncated: bool = False

    @property
    def identical(self) -> bool:
        return not self.paths


def child_path(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    if _IDENTIFIER.match(key):
        return f"{path}.{key}"
    escaped = key.replace("\\", "\\\\").replace('"', '\\"')
    return f'{path}["{escaped}"]'


def json_diff(left: Any, right: Any, *, root: str = "$", limit: int = MAX_PATHS) -> JsonDiff:
    """The paths at which `left` and `right` differ (a path whose subtrees differ is not listed,
    only the deepest differences are)."""
    found: list[str] = []
    truncated = _walk(left, right, root, found, limit)
    return JsonDiff(tuple(found), truncated)


def _kind(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return repr(value) if value is None else "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, (list, tuple)):
        return "array"
    return type(value).__name__


_MISSING = object()


def _walk(left: Any, right: Any, path: str, found: list[str], limit: int) -> bool:
    """Append differences; True once `limit` is reached (the walk stops)."""
    kind = _kind(left)
    if kind != _kind(right):
        found.append(path)
        return len(found) >= limit
    if kind in ("object", "array"):
        for key, a, b in _children(kind, left, right):
            sub = child_path(path, key)
            if a is _MISSING or b is _MISSING:  # on one side only: a difference at its own path
                found.append(sub)
                if len(found) >= limit:
                    return True
            elif _walk(a, b, sub, found, limit):
                return True
        return False
    if left != right:
        found.append(path)
        return len(found) >= limit
    return False


def _children(kind: str, left: Any, right: Any):
    """(path key, left child, right child) of two objects (keys sorted) or arrays (by index),
    `_MISSING` on the side that lacks it."""
    if kind == "object":
        for key in sorted(set(left) | set(right), key=str):
            yield str(key), left.get(key, _MISSING), right.get(key, _MISSING)
    else:
        for index in range(max(len(left), len(right))):
            yield (index, left[index] if index < len(left) else _MISSING,
                   right[index] if index < len(right) else _MISSING)
