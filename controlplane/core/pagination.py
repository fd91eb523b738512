"""List pagination: `?limit=&offset=`, refused with a 400 naming the parameter when out of range.

DRF's LimitOffsetPagination silently falls back to its default for `limit=abc` or `offset=-1`; a
client would then page through the wrong rows without knowing. Here every list answers
`{count, next, previous, results}` and the schema documents the bounds.
"""
from __future__ import annotations

from django.conf import settings
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response

from controlplane.core.errors import ApplicationError

# PostgreSQL's OFFSET is a bigint; far below that, an offset past every row is simply empty.
MAX_OFFSET = 2**31 - 1


class Pagination(LimitOffsetPagination):
    def __init__(self) -> None:
        self.default_limit = settings.REST_FRAMEWORK["PAGE_SIZE"]
        self.max_limit = settings.API_MAX_PAGE_SIZE

    def get_limit(self, request) -> int:
        return _bounded(request, self.limit_query_param, 1, self.max_limit, self.default_limit)

    def get_offset(self, request) -> int:
        return _bounded(request, self.offset_query_param, 0, MAX_OFFSET, 0)

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        bounds = {self.limit_query_param: (1, self.max_limit), self.offset_query_param: (0, MAX_OFFSET)}
        for parameter in parameters:
            low, high = bounds[parameter["name"]]
            parameter["schema"].update(minimum=low, maximum=high)
        return parameters


def _bounded(request, name: str, low: int, high: int, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    text = raw.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 12 or not low <= int(text) <= high:
        raise ApplicationError(f"{name} must be a whole number from {low} to {high}, got {raw[:40]!r}", path=name)
    return int(text)


def paginated(request, view, queryset, serializer_class, **context) -> Response:
    """One page of `queryset` serialized as `{count, next, previous, results}`."""
    paginator = Pagination()
    page = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response(serializer_class(page, many=True, context=context).data)
