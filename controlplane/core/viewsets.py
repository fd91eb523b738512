"""What the API views of every app share: validated input and paged lists."""
from __future__ import annotations

from rest_framework import viewsets
from rest_framework.response import Response

from controlplane.core.pagination import paginated


def validated(serializer_class, data, **kwargs) -> dict:
    """`data` checked by `serializer_class`; a 400 naming every bad field otherwise."""
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class PagedViewSet(viewsets.GenericViewSet):
    """A viewset whose objects have numeric ids and whose lists answer one page at a time."""

    lookup_value_regex = "[0-9]+"

    def paged(self, queryset, serializer_class) -> Response:
        return paginated(self.request, self, queryset, serializer_class)
