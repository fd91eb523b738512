"""The one application error type, rendered by `api_exception_handler` as DESIGN.md's JSON shape.

    ApplicationError                 400 invalid
      NotFound                       404 not_found      (also another tenant's object)
      PermissionDenied               403 forbidden      (a member whose role is too low)
      Conflict                       409 conflict
      PreconditionFailed             412 precondition_failed
      PreconditionRequired           428 precondition_required

Services raise these; `pipelines` errors are translated at the service boundary with their paths
kept in `errors` as `[{"path", "message", "code"}]`.
"""
from __future__ import annotations

from typing import Any, Iterable


class ApplicationError(Exception):
    status_code = 400
    default_code = "invalid"

    def __init__(
        self,
        detail: str,
        *,
        code: str | None = None,
        path: str | None = None,
        errors: Iterable[dict[str, Any]] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code or self.default_code
        self.path = path
        self.errors = list(errors) if errors is not None else None
        self.extra = extra or {}

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.code, "detail": self.detail, "path": self.path}
        if self.errors is not None:
            body["errors"] = self.errors
        body.update(self.extra)
        return body


class NotFound(ApplicationError):
    status_code = 404
    default_code = "not_found"


class PermissionDenied(ApplicationError):
    status_code = 403
    default_code = "forbidden"


class Conflict(ApplicationError):
    status_code = 409
    default_code = "conflict"


class PreconditionFailed(ApplicationError):
    status_code = 412
    default_code = "precondition_failed"


class PreconditionRequired(ApplicationError):
    status_code = 428
    default_code = "precondition_required"


def issues_to_errors(issues: Iterable[Any]) -> list[dict[str, Any]]:
    """Turn `pipelines.errors.Issue`s into the API's `errors` list, keeping their paths."""
    return [{"path": issue.path, "message": issue.message, "code": issue.code} for issue in issues]
