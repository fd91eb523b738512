"""Secret references: ``{"$secret": "name"}`` in graphs, artifacts and stored step inputs.

DESIGN.md: graphs and artifacts hold references, never values. A reference stands for text
and may go wherever a string (or an arbitrary value) is accepted; step schemas check it as
such. Only at the last moment, right before a step's ``run``, does
``resolve_secret_refs`` replace each reference with ``resolver(name)``; the engine keeps storing
the unresolved config. ``redact`` takes resolved values back out of error text.

A reference is exactly ``{"$secret": "<non-empty name>"}``. Anything else with a ``$secret``
key is a mistake that ``malformed_secret_refs`` and ``secret_issues`` point at.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

from pipelines.errors import Issue

SECRET_KEY = "$secret"
MISSING_SECRET = "missing_secret"
INVALID_SECRET_REF = "invalid_config"  # a malformed reference is a config mistake


def is_secret_ref(value: Any) -> bool:
    """True for exactly ``{"$secret": "<name>"}`` with a non-empty string name."""
    return (isinstance(value, Mapping) and len(value) == 1
            and isinstance(value.get(SECRET_KEY), str) and bool(value[SECRET_KEY]))


def secret_ref(name: str) -> dict[str, str]:
    """The reference to secret ``name``."""
    return {SECRET_KEY: name}


def find_secret_refs(value: Any, path: str = "config") -> list[tuple[str, str]]:
    """``(path, name)`` of every reference in ``value``, in document order."""
    if is_secret_ref(value):
        return [(path, value[SECRET_KEY])]
    out: list[tuple[str, str]] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            out += find_secret_refs(item, f"{path}.{key}")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            out += find_secret_refs(item, f"{path}[{i}]")
    return out


def malformed_secret_refs(value: Any, path: str = "config") -> list[str]:
    """Paths of mappings that hold a ``$secret`` key but are not a valid reference."""
    if is_secret_ref(value):
        return []
    out: list[str] = []
    if isinstance(value, Mapping):
        if SECRET_KEY in value:
            return [path]
        for key, item in value.items():
            out += malformed_secret_refs(item, f"{path}.{key}")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            out += malformed_secret_refs(item, f"{path}[{i}]")
    return out


def malformed_ref_issue(path: str) -> Issue:
    return Issue(path, 'invalid secret reference; write {"$secret": "<name>"} with nothing else '
                       "in the mapping", INVALID_SECRET_REF)


def secret_issues(value: Any, path: str, known: Collection[str]) -> list[Issue]:
    """Malformed references and references to secrets not in ``known``."""
    issues = [malformed_ref_issue(p) for p in malformed_secret_refs(value, path)]
    for ref_path, name in find_secret_refs(value, path):
        if name not in known:
            issues.append(Issue(ref_path, f"secret {name!r} does not exist; create it or fix the "
                                          "reference", MISSING_SECRET))
    return issues


def resolve_secret_refs(value: Any, resolver: Callable[[str], str]) -> Any:
    """A new value with every reference replaced by ``resolver(name)``; ``value`` is untouched.

    Mappings and lists are copied (as dicts and lists); whatever the resolver raises
    (``KeyError`` for an unknown name, say) propagates.
    """
    if is_secret_ref(value):
        return resolver(value[SECRET_KEY])
    if isinstance(value, Mapping):
        return {k: resolve_secret_refs(v, resolver) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [resolve_secret_refs(v, resolver) for v in value]
    return value


def redact(value: Any, secrets: Mapping[str, str]) -> Any:
    """``value`` with each secret's text (``secrets``: name -> text) replaced by ``<secret:name>``.

    For error messages and details: a step that fails may echo what it was given.
    """
    if isinstance(value, str):
        for name, text in sorted(secrets.items(), key=lambda item: -len(item[1])):
            if text:
                value = value.replace(text, f"<secret:{name}>")
        return value
    if isinstance(value, Mapping):
        return {k: redact(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v, secrets) for v in value]
    return value
