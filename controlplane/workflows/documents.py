"""The shape check a graph document passes before it is stored as a draft.

Only the shape is checked here (a mapping of JSON values whose `nodes` and `edges` are lists of
mappings), so that a half-written draft can be saved without losing work; full validation
(`pipelines.validation.validate_graph`) is reported with the draft and enforced by publishing.
Text (a JSON or YAML string) is parsed with `pipelines.graph.load_document`; text and mappings
alike are held to the API's document limits (`controlplane.core.limits`) before anything else.
"""
from __future__ import annotations

import math
from typing import Any

from controlplane.core.errors import ApplicationError
from controlplane.core.limits import document_limits, limit_exceeded
from pipelines.document_limits import check_value
from pipelines.errors import DocumentLimitError, GraphError
from pipelines.graph import canonical_json, load_document

MAX_DOCUMENT_BYTES = 1_000_000


def _join(prefix: str, path: str) -> str:
    if not path:
        return prefix
    if not prefix:
        return path
    return f"{prefix}{path}" if path.startswith("[") else f"{prefix}.{path}"


def _invalid(problems: list[tuple[str, str]], *, path: str) -> ApplicationError:
    errors = [{"path": p, "message": m, "code": "invalid_document"} for p, m in problems]
    first = errors[0]
    return ApplicationError(
        f"{first['path']}: {first['message']}" if first["path"] else first["message"],
        code="invalid_document",
        path=first["path"] or path,
        errors=errors,
    )


def _json_problems(value: Any, path: str, out: list[tuple[str, str]]) -> None:
    if len(out) >= 20:
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                out.append((path, f"mapping key {key!r} is not a string; quote the key"))
                continue
            _json_problems(item, _join(path, key), out)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _json_problems(item, f"{path}[{index}]", out)
    elif isinstance(value, float):
        if not math.isfinite(value):
            out.append((path, f"{value!r} is not a JSON number; use a finite number or a string"))
    elif value is not None and not isinstance(value, (str, int, bool)):
        out.append((path, f"a {type(value).__name__} is not a JSON value; quote it as a string"))


def clean_graph_document(value: Any, *, path: str = "graph") -> dict:
    """The document as a JSON-safe dict, or a 400 listing every shape problem with its path."""
    limits = document_limits()
    try:
        if isinstance(value, (str, bytes)):
            value = load_document(value, limits=limits)
        else:
            check_value(value, limits)
    except DocumentLimitError as exc:
        raise limit_exceeded(exc, prefix=path)
    except GraphError as exc:
        raise _invalid([(_join(path, i.path), i.message) for i in exc.issues], path=path)
    if not isinstance(value, dict):
        got = "nothing" if value is None else f"a {type(value).__name__}"
        raise _invalid([(path, f"expected a mapping with 'nodes' and 'edges', got {got}")], path=path)
    problems: list[tuple[str, str]] = []
    _json_problems(value, path, problems)
    for key in ("nodes", "edges"):
        items = value.get(key)
        if key in value and not isinstance(items, list):
            problems.append((_join(path, key), f"{key} must be a list"))
        elif isinstance(items, list):
            for index, item in enumerate(items):
                if not isinstance(item, dict):
                    problems.append((f"{_join(path, key)}[{index}]", f"each of {key} must be a mapping"))
    if problems:
        raise _invalid(problems, path=path)
    if len(canonical_json(value).encode("utf-8")) > MAX_DOCUMENT_BYTES:
        raise _invalid([(path, f"the document is larger than {MAX_DOCUMENT_BYTES} bytes; split the workflow")], path=path)
    return value
