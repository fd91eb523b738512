"""A database that refuses or drops connections answers 503 with Retry-After, never a 500 page.

PostgreSQL at max_connections ("sorry, too many clients already"), restarting, or unreachable
surfaces in a view as Django's OperationalError or InterfaceError. That is the service being
unavailable for a moment, not a bug in the request: clients should retry after a pause, and the
response must not be Django's error page (which, with DEBUG on, shows settings and the
connection's password). The API answers in its JSON error shape; other pages in plain text.
"""
from __future__ import annotations

import logging

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse

logger = logging.getLogger(__name__)

DATABASE_UNAVAILABLE = (OperationalError, InterfaceError)


def unavailable_response(request: HttpRequest, exc: BaseException) -> HttpResponse:
    """The 503 for a request whose database connection failed (the error is logged, not shown)."""
    logger.error(
        "database.unavailable",
        extra={"path": request.path, "method": request.method, "error": f"{type(exc).__name__}: {exc}"},
    )
    retry_after = settings.DATABASE_UNAVAILABLE_RETRY_AFTER_S
    detail = f"the database is unavailable; retry in {retry_after} s"
    if request.path.startswith("/api/"):
        response: HttpResponse = JsonResponse({"error": "unavailable", "detail": detail, "path": None}, status=503)
    else:
        response = HttpResponse(detail + "\n", status=503, content_type="text/plain; charset=utf-8")
    response["Retry-After"] = str(retry_after)
    return response


class DatabaseUnavailableMiddleware:
    """Turns a view's OperationalError / InterfaceError into the 503 (listed last in MIDDLEWARE)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, DATABASE_UNAVAILABLE):
            return unavailable_response(request, exception)
        return None
