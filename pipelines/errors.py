"""Errors raised by the pipelines domain core.

Hierarchy::

    PipelineError                   anything this package raises on purpose
     +-- GraphError                 a graph document is malformed; carries every Issue found
     |    +-- CycleError            the graph has a cycle; carries the cycle as a list of node ids
     |    +-- DocumentLimitError    a document is too deep, too big or too alias-heavy to read
     +-- TemplateError              a ``{{ jq }}`` template failed to compile or evaluate
     +-- ResourceExhausted          a sandboxed jq evaluation hit its time budget or memory cap
     +-- StepConfigError            a step's config does not match its type's schema
     +-- StepFailed                 a step implementation failed at run time (maybe retryable)
     |    +-- EgressDenied          a connection the egress policy refuses (pipelines.egress)
     +-- EgressRuleError            an egress allow-list entry cannot be parsed (pipelines.egress)
     +-- NodeNotFound (KeyError)    a node id was looked up that the graph does not hold

An ``Issue`` is one located problem (``path``, ``message``, ``code``); validation returns them
instead of raising so callers can show every problem at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

# Stable issue codes: API tests and clients match on these, never on message prose.
INVALID_DOCUMENT = "invalid_document"
EMPTY_GRAPH = "empty_graph"
INVALID_ID = "invalid_id"
DUPLICATE_ID = "duplicate_id"
DANGLING_EDGE = "dangling_edge"
SELF_LOOP = "self_loop"
CYCLE = "cycle"
UNKNOWN_STEP_TYPE = "unknown_step_type"
MISSING_CONFIG = "missing_config"
INVALID_CONFIG = "invalid_config"
INVALID_JQ = "invalid_jq"
INVALID_FIELD = "invalid_field"
INVALID_BRANCH = "invalid_branch"
INVALID_REFERENCE = "invalid_reference"
DUPLICATE_EDGE = "duplicate_edge"
UNKNOWN_PORT = "unknown_port"
# jq that the sandbox refuses outright (module directives: import, include, module).
FORBIDDEN_JQ = "forbidden_jq"

# Step failure codes (a failed attempt's ``code`` and ``details.reason``), not issue codes.
RESOURCE_EXHAUSTED = "resource_exhausted"
SANDBOX_CRASHED = "sandbox_crashed"
LIMIT_EXCEEDED = "limit_exceeded"

ISSUE_CODES = frozenset(
    {
        INVALID_DOCUMENT,
        EMPTY_GRAPH,
        INVALID_ID,
        DUPLICATE_ID,
        DANGLING_EDGE,
        SELF_LOOP,
        CYCLE,
        UNKNOWN_STEP_TYPE,
        MISSING_CONFIG,
        INVALID_CONFIG,
        INVALID_JQ,
        INVALID_FIELD,
        INVALID_BRANCH,
        INVALID_REFERENCE,
        DUPLICATE_EDGE,
        UNKNOWN_PORT,
        FORBIDDEN_JQ,
        LIMIT_EXCEEDED,
    }
)


@dataclass(frozen=True)
class Issue:
    """One problem found in a document, located by a path like ``nodes[2].config.url``."""

    path: str
    message: str
    code: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "message": self.message, "code": self.code}


def sort_issues(issues: Iterable[Issue]) -> tuple[Issue, ...]:
    """Order issues by path (then code, message) so reports are stable across runs."""
    return tuple(sorted(issues, key=lambda i: (_path_key(i.path), i.code, i.message)))


def _path_key(path: str) -> tuple:
    # Natural sort so nodes[10] comes after nodes[2]; plain string order would not.
    parts: list[tuple[int, Any]] = []
    token = ""
    for ch in path:
        if ch.isdigit():
            token += ch
            continue
        if token:
            parts.append((0, int(token)))
            token = ""
        parts.append((1, ch))
    if token:
        parts.append((0, int(token)))
    return tuple(parts)


class PipelineError(Exception):
    """Base of every error this package raises deliberately."""


class GraphError(PipelineError):
    """A graph document is invalid; ``issues`` holds every problem found, each with its path."""

    def __init__(self, issues: Iterable[Issue], message: str | None = None):
        self.issues: tuple[Issue, ...] = tuple(issues)
        super().__init__(message or self._summarize())

    def _summarize(self) -> str:
        if not self.issues:
            return "invalid graph"
        first = self.issues[0]
        where = f"{first.path}: " if first.path else ""
        more = len(self.issues) - 1
        tail = f" (and {more} more issue{'s' if more != 1 else ''})" if more else ""
        return f"{where}{first.message}{tail}"


class CycleError(GraphError):
    """The graph has a cycle; ``cycle`` lists its node ids with the first repeated at the end."""

    def __init__(self, cycle: list[str], issues: Iterable[Issue] | None = None):
        self.cycle = list(cycle)
        if issues is None:
            issues = [
                Issue(
                    "nodes",
                    f"cycle {' -> '.join(repr(n) for n in self.cycle)}; remove one of these edges",
                    CYCLE,
                )
            ]
        super().__init__(issues)


class DocumentLimitError(GraphError):
    """A document crossed one of ``DocumentLimits``; ``limit`` names it, ``path`` says where."""

    def __init__(self, *, limit: str, value: int, path: str, message: str):
        self.limit = limit
        self.value = value
        self.path = path
        super().__init__([Issue(path, message, LIMIT_EXCEEDED)])


class TemplateError(PipelineError):
    """A ``{{ jq }}`` template failed to compile or evaluate; ``path`` locates it, ``code`` is
    the issue code validation reports it under (``invalid_jq`` or ``forbidden_jq``)."""

    def __init__(self, message: str, *, path: str = "", expression: str = "",
                 code: str = INVALID_JQ):
        self.path = path
        self.expression = expression
        self.message = message
        self.code = code
        super().__init__(f"{path}: {message}" if path else message)


class ResourceExhausted(PipelineError):
    """A sandboxed jq evaluation went over a limit; ``limit`` is ``"time"`` or ``"memory"``.

    ``budget`` is the limit itself (seconds or MiB). Never retryable: the same program on the
    same data exhausts the same limit again.
    """

    code = RESOURCE_EXHAUSTED

    def __init__(self, message: str, *, limit: str, budget: float, path: str = "",
                 expression: str = ""):
        self.message = message
        self.limit = limit
        self.budget = budget
        self.path = path
        self.expression = expression
        super().__init__(f"{path}: {message}" if path else message)

    def details(self) -> dict[str, Any]:
        unit = "budget_s" if self.limit == "time" else "memory_mib"
        out: dict[str, Any] = {"reason": self.code, "limit": self.limit, unit: self.budget}
        if self.path:  # not the expression: a jq step's program may be a resolved secret
            out["path"] = self.path
        return out

    def to_dict(self) -> dict[str, Any]:
        """The failed attempt's error, shaped like ``StepFailed.to_dict`` (with ``code``)."""
        return {"message": str(self), "retryable": False, "details": self.details(),
                "code": self.code}


class StepConfigError(PipelineError):
    """A step's config does not fit its type's schema; ``issues`` holds the details."""

    def __init__(self, message: str, issues: Iterable[Issue] = ()):
        self.issues: tuple[Issue, ...] = tuple(issues)
        super().__init__(message)


class StepFailed(PipelineError):
    """A step failed at run time; ``retryable`` tells the engine whether another attempt may help."""

    def __init__(self, message: str, *, retryable: bool = False, details: dict | None = None,
                 code: str = ""):
        self.message = message
        self.retryable = bool(retryable)
        self.details: dict = dict(details or {})
        self.code = code  # a stable error code for clients (e.g. "egress_denied"), if any
        super().__init__(message)

    def to_dict(self) -> dict[str, Any]:
        out = {"message": self.message, "retryable": self.retryable, "details": self.details}
        if self.code:
            out["code"] = self.code
        return out


class NodeNotFound(PipelineError, KeyError):
    """A node id was looked up that the graph does not hold."""

    def __str__(self) -> str:  # KeyError would repr() the message; show it plainly
        return str(self.args[0]) if self.args else "unknown node"
