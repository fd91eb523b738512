"""One DRF exception handler: every error leaves the API as `{"error", "detail", "path", ...}`."""
from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.http import Http404
from rest_framework import exceptions as drf
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from controlplane.core.errors import ApplicationError
from controlplane.core.middleware import payload_too_large_body


def _flatten(detail: Any, prefix: str = "") -> list[dict[str, str]]:
    """DRF's nested validation detail as a flat list of {path, message, code}."""
    if isinstance(detail, dict):
        out: list[dict[str, str]] = []
        for key, value in detail.items():
            key_path = prefix if key == "non_field_errors" else (f"{prefix}.{key}" if prefix else str(key))
            out.extend(_flatten(value, key_path))
        return out
    if isinstance(detail, list):
        if all(isinstance(item, drf.ErrorDetail) or isinstance(item, str) for item in detail):
            return [
                {"path": prefix, "message": str(item), "code": getattr(item, "code", "invalid")} for item in detail
            ]
        out = []
        for index, item in enumerate(detail):
            if item:
                out.extend(_flatten(item, f"{prefix}[{index}]"))
        return out
    return [{"path": prefix, "message": str(detail), "code": getattr(detail, "code", "invalid")}]


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ApplicationError):
        return Response(exc.to_dict(), status=exc.status_code)
    if isinstance(exc, RequestDataTooBig):  # a view read request.body beyond API_MAX_BODY_BYTES
        return Response(payload_too_large_body(), status=413)
    if isinstance(exc, RecursionError):
        # json.load and yaml give up on absurdly nested bodies this way; it is the client's error.
        exc = drf.ParseError("the request body is nested too deeply; flatten it")
    if isinstance(exc, Http404):
        exc = drf.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = drf.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, drf.ValidationError):
        errors = _flatten(exc.detail)
        first = errors[0] if errors else {"path": None, "message": "invalid input"}
        response.data = {
            "error": "invalid",
            "detail": f"{first['path']}: {first['message']}" if first["path"] else first["message"],
            "path": first["path"] or None,
            "errors": errors,
        }
        return response
    codes = {
        drf.ParseError: "malformed_request",
        drf.NotAuthenticated: "not_authenticated",
        drf.AuthenticationFailed: "authentication_failed",
        drf.PermissionDenied: "forbidden",
        drf.NotFound: "not_found",
        drf.MethodNotAllowed: "method_not_allowed",
        drf.UnsupportedMediaType: "unsupported_media_type",
        drf.NotAcceptable: "not_acceptable",
        drf.Throttled: "throttled",
    }
    code = next((c for cls, c in codes.items() if isinstance(exc, cls)), "error")
    detail = exc.detail if isinstance(exc, drf.APIException) else str(exc)
    response.data = {"error": code, "detail": str(detail), "path": None}
    return response
