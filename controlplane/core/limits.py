"""The document limits of the API, from settings (README: configuration table, "API limits").

Every JSON or YAML body and every graph document is read within these; `pipelines` holds the
checks themselves so the CLI and planner paths apply the same ones.
"""
from __future__ import annotations

from django.conf import settings

from controlplane.core.errors import ApplicationError
from pipelines.document_limits import DocumentLimits
from pipelines.errors import DocumentLimitError

# The setting that sets each limit, named in the error so an operator knows what to raise.
SETTING_OF = {
    "max_depth": "API_MAX_DOCUMENT_DEPTH",
    "max_nodes": "API_MAX_DOCUMENT_NODES",
    "max_alias_nodes": "API_MAX_YAML_ALIAS_NODES",
}


def document_limits() -> DocumentLimits:
    return DocumentLimits(
        max_depth=settings.API_MAX_DOCUMENT_DEPTH,
        max_nodes=settings.API_MAX_DOCUMENT_NODES,
        max_alias_nodes=settings.API_MAX_YAML_ALIAS_NODES,
    )


class LimitExceeded(ApplicationError):
    """A body or document beyond one of the API's limits (400 limit_exceeded)."""

    default_code = "limit_exceeded"


def limit_exceeded(exc: DocumentLimitError, *, prefix: str = "") -> LimitExceeded:
    """The API error for a `pipelines` limit error, its path under `prefix` (e.g. `graph`)."""
    path = _under(prefix, exc.path)
    message = exc.issues[0].message
    return LimitExceeded(
        f"{path}: {message}" if path else message,
        path=path or None,
        extra={"limit": exc.limit, "setting": SETTING_OF.get(exc.limit), "max": exc.value},
    )


def _under(prefix: str, path: str) -> str:
    if not prefix or not path:
        return prefix or path
    return f"{prefix}{path}" if path.startswith("[") else f"{prefix}.{path}"
