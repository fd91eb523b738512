"""Graph documents as data: loading JSON/YAML text, the canonical form and its digest.

``load_document`` turns JSON or YAML text into a dict (YAML only where it means what JSON could
say) within ``DocumentLimits`` (depth, values, YAML aliases: ``pipelines.document_limits``), and ``canonical_json`` / ``graph_digest`` give a form that does not change with key order,
whitespace, JSON vs YAML, or the order of the node and edge lists. The small JSON-value helpers
(``is_int``, ``is_number``, ``_copy``, ``json_type``) live here too; ``pipelines.graph``
re-exports all of it.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any, Mapping

from pipelines import errors as E
from pipelines.document_limits import DEFAULT_LIMITS, DocumentLimits, check_value, load_yaml
from pipelines.errors import GraphError, Issue
from pipelines.value_types import fits


def load_document(text: str | bytes, *, limits: DocumentLimits = DEFAULT_LIMITS) -> dict:
    """Parse JSON, or YAML when it is not JSON, into a dict within ``limits``.

    Raises ``GraphError`` (``DocumentLimitError`` for a document beyond ``limits``).
    """
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            _fail_document(f"document is not UTF-8 (byte {exc.start}); save it as UTF-8")
    if not isinstance(text, str):
        _fail_document(f"expected JSON or YAML text, got {type(text).__name__}")
    try:
        doc = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:  # the C decoder's own guard, far beyond max_depth
        raise limits.refuse("max_depth", "", f"nested deeper than {limits.max_depth} levels; flatten the document")
    except ValueError as json_exc:
        doc = _load_yaml(text, json_exc, limits)
    else:
        check_value(doc, limits)
    if not isinstance(doc, dict):
        got = "nothing" if doc is None else f"a {json_type(doc)}"
        _fail_document(f"top level must be a mapping with 'nodes' and 'edges', got {got}")
    problem = _first_non_json(doc, "")
    if problem is not None:
        _fail_document(problem)
    return doc


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def _load_yaml(text: str, json_exc: ValueError, limits: DocumentLimits) -> Any:
    import yaml

    try:
        doc = load_yaml(text, limits)
    except yaml.YAMLError as exc:
        stripped = text.lstrip()
        if stripped.startswith(("{", "[")) and isinstance(json_exc, json.JSONDecodeError):
            # It was meant as JSON; JSON's own position is the useful one.
            _fail_document(
                f"invalid JSON at line {json_exc.lineno}, column {json_exc.colno}: {json_exc.msg}"
            )
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        _fail_document(f"document is neither JSON nor YAML{where}: {problem}")
    return _on_key(doc)


def _on_key(doc: Any) -> Any:
    # YAML 1.1 reads an unquoted `on:` key as the boolean true (GitHub Actions' trap). At the top
    # of a graph document no key can mean a boolean, so it is the chaining trigger `on`.
    if isinstance(doc, dict) and True in doc and "on" not in doc:
        doc = {("on" if k is True else k): v for k, v in doc.items()}
    return doc


def _first_non_json(value: Any, path: str) -> str | None:
    # YAML can express what JSON cannot (non-string keys, .nan, .inf); the digest needs JSON.
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                where = f"{path}.{k}" if path else str(k)
                return f"{where}: mapping keys must be strings; quote the key"
            found = _first_non_json(v, f"{path}.{k}" if path else k)
            if found:
                return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found = _first_non_json(v, f"{path}[{i}]")
            if found:
                return found
    elif isinstance(value, float) and not math.isfinite(value):
        return f"{path or 'document'}: {value} is not a JSON number; use a finite number or a string"
    return None


def _fail_document(message: str):
    raise GraphError([Issue("", message, E.INVALID_DOCUMENT)])


def canonical_document(doc: Any) -> Any:
    """A deep copy with nodes sorted by id and edges by (from, to, branch).

    Nothing is added or removed (no defaults, unknown keys kept): two documents share a
    canonical form exactly when they say the same thing in the same words.
    """
    if isinstance(doc, (str, bytes, bytearray)):
        doc = load_document(doc)
    out = _copy(doc)
    if not isinstance(out, dict):
        return out
    if isinstance(out.get("nodes"), list):
        out["nodes"] = sorted(out["nodes"], key=_node_sort_key)
    if isinstance(out.get("edges"), list):
        out["edges"] = sorted(out["edges"], key=_edge_sort_key)
    return out


def canonical_json(doc: Any) -> str:
    """Compact, key-sorted JSON of ``canonical_document(doc)``."""
    return json.dumps(
        canonical_document(doc),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )


def graph_digest(doc: Any) -> str:
    """``"sha256:<hex>"`` of the canonical JSON."""
    return "sha256:" + hashlib.sha256(canonical_json(doc).encode("utf-8")).hexdigest()


def _node_sort_key(node: Any) -> tuple:
    if isinstance(node, dict) and isinstance(node.get("id"), str):
        return (0, node["id"], _dump(node))
    return (1, "", _dump(node))


def _edge_sort_key(edge: Any) -> tuple:
    if isinstance(edge, dict):
        parts = tuple("" if edge.get(k) is None else str(edge.get(k)) for k in ("from", "to", "branch"))
        return (0, parts, _dump(edge))
    return (1, ("", "", ""), _dump(edge))


def _dump(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=repr)


def _copy(value: Any) -> Any:
    # JSON documents only hold dicts, lists and scalars; this is deepcopy without its overhead.
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_copy(v) for v in value]
    return value


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, Mapping):
        return "mapping"
    return type(value).__name__


def is_number(value: Any) -> bool:
    """A finite number, not a boolean (``pipelines.value_types``' ``number``)."""
    return fits("number", value)


def is_int(value: Any) -> bool:
    """An ``int``, not a boolean (``pipelines.value_types``' ``integer``)."""
    return fits("integer", value)
