"""Who may do what in which company.

Every lookup goes through the caller's memberships: an object of a company the caller does not
belong to is reported as not found (404), never as forbidden, so its existence is not confirmed.
A member whose role is too low gets 403 naming the role needed.
"""
from __future__ import annotations

from django.db.models import QuerySet

from controlplane.core.errors import NotFound, PermissionDenied
from controlplane.tenancy.models import Company, Membership, Role


def member_company_ids(user) -> QuerySet:
    """Ids of the companies `user` belongs to, as a subquery for `company_id__in=`."""
    if not getattr(user, "is_authenticated", False):
        return Company.objects.none().values("id")
    return Membership.objects.filter(user=user).values("company_id")


def role_in(user, company_id: int) -> Role | None:
    if not getattr(user, "is_authenticated", False):
        return None
    role = Membership.objects.filter(user=user, company_id=company_id).values_list("role", flat=True).first()
    return Role(role) if role else None


def require_role(user, company_id: int, minimum: Role, *, what: str = "object") -> Role:
    """The caller's role in the company, if at least `minimum`; NotFound for non-members."""
    return check_role(role_in(user, company_id), minimum, what=what)


def check_role(role: Role | str | None, minimum: Role, *, what: str = "object") -> Role:
    """`require_role` for a role already read with the object (one query for both)."""
    role = Role(role) if role else None
    if role is None:
        raise NotFound(f"{what} not found")
    if not role.at_least(minimum):
        raise PermissionDenied(
            f"this needs the {Role(minimum).value} role or higher in the company; you are {role.value}",
            code="insufficient_role",
        )
    return role


def company_scoped(queryset: QuerySet, user, company_id=None, field: str = "company_id") -> QuerySet:
    """`queryset` narrowed to the caller's companies (`field` names the company), and to
    `company_id` when given; a company id that is not a number matches nothing."""
    queryset = queryset.filter(**{f"{field}__in": member_company_ids(user)})
    if company_id not in (None, ""):
        try:
            queryset = queryset.filter(**{field: int(company_id)})
        except (TypeError, ValueError):
            return queryset.none()
    return queryset


def get_visible(queryset: QuerySet, pk, what: str):
    """The object `pk` of a scoped `queryset`, or a 404 naming `what`: another tenant's object and
    one that does not exist look the same."""
    try:
        return queryset.get(pk=int(pk))
    except (TypeError, ValueError, queryset.model.DoesNotExist):
        raise NotFound(f"{what} not found") from None
