"""What every page does with a selector: the object it finds for the caller, or a 404."""
from __future__ import annotations

from typing import Any, Callable, TypeVar

from django.http import Http404

from controlplane.core.errors import NotFound

T = TypeVar("T")


def or_404(select: Callable[..., T], **lookup: Any) -> T:
    """`select(**lookup)`; another company's object (or none) is a 404 with the selector's detail."""
    try:
        return select(**lookup)
    except NotFound as error:
        raise Http404(error.detail) from None
