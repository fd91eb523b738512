"""Every answer under /api/ is JSON in the error shape, whatever part of the stack gave it.

DRF renders its own errors through `api_exception_handler`; this middleware covers the rest:

- a body larger than `DATA_UPLOAD_MAX_MEMORY_SIZE` (API_MAX_BODY_BYTES) is a 413 before a byte
  of it is read when `Content-Length` says so, and when Django finds out while reading
  `request.body` (`RequestDataTooBig`);
- an unknown route is a JSON 404 with `DEBUG` on too (Django's technical 404 page is HTML), and
  any other non-JSON error (Django's 400 page, a 405 from a plain view) is converted likewise.

It sits outside CommonMiddleware, so APPEND_SLASH redirects still happen first.
"""
from __future__ import annotations

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse

API_PREFIX = "/api/"

CODES = {
    400: "malformed_request",
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def error_response(status: int, detail: str, code: str | None = None) -> JsonResponse:
    return JsonResponse({"error": code or CODES.get(status, "error"), "detail": detail, "path": None}, status=status)


def payload_too_large_body() -> dict:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    detail = f"the request body is larger than {limit} bytes (API_MAX_BODY_BYTES); send less, or split it"
    return {"error": "payload_too_large", "detail": detail, "path": None}


def payload_too_large() -> JsonResponse:
    return JsonResponse(payload_too_large_body(), status=413)


class ApiErrorMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not request.path.startswith(API_PREFIX):
            return self.get_response(request)
        if _declared_length(request) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
            return payload_too_large()
        response = self.get_response(request)
        # A DRF response was rendered as the client asked (the browsable API for a browser).
        if response.status_code >= 400 and not _is_json(response) and not hasattr(response, "accepted_renderer"):
            return _as_json(request, response)
        return response

    def process_exception(self, request, exception):
        if isinstance(exception, RequestDataTooBig) and request.path.startswith(API_PREFIX):
            return payload_too_large()
        return None


def _declared_length(request) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


def _is_json(response) -> bool:
    return response.get("Content-Type", "").split(";")[0].strip() in ("application/json", "application/problem+json")


def _as_json(request, response) -> JsonResponse:
    status = response.status_code
    if status == 404:
        detail = f"no API route {request.method} {request.path}"
    elif status == 405:
        detail = f"{request.method} is not allowed on {request.path}"
    elif status >= 500:
        detail = "internal error; see the server log"
    else:
        detail = response.reason_phrase.lower()
    converted = error_response(status, detail, "server_error" if status >= 500 else None)
    if response.has_header("Allow"):
        converted["Allow"] = response["Allow"]
    return converted
