"""Reads of the tenancy app, always scoped to the caller's companies.

A `*_get` of an object outside the caller's companies raises NotFound, exactly as for an id that
does not exist, so the answer never confirms another tenant's object.
"""
from __future__ import annotations

from django.db.models import OuterRef, QuerySet, Subquery

from controlplane.core.errors import NotFound
from controlplane.tenancy.access import member_company_ids
from controlplane.tenancy.models import Company, Membership, Project

MAX_ID = 2**63 - 1


def is_db_id(value: int) -> bool:
    """Ids from URLs can be any digits; one a bigint cannot hold exists nowhere (and must not reach SQL)."""
    return 0 < value <= MAX_ID


def company_list(*, user) -> QuerySet[Company]:
    """The caller's companies, each annotated with `my_role`."""
    my_role = Membership.objects.filter(company=OuterRef("pk"), user=user).values("role")[:1]
    return Company.objects.filter(id__in=member_company_ids(user)).annotate(my_role=Subquery(my_role))


def company_get(*, user, company_id: int) -> Company:
    company = company_list(user=user).filter(pk=company_id).first() if is_db_id(company_id) else None
    if company is None:
        raise NotFound("company not found", path="company")
    return company


def project_list(*, user, company_id: int | None = None) -> QuerySet[Project]:
    projects = Project.objects.filter(company_id__in=member_company_ids(user)).select_related("company")
    if company_id is not None:
        projects = projects.filter(company_id=company_id)
    return projects


def project_get(*, user, project_id: int) -> Project:
    project = project_list(user=user).filter(pk=project_id).first() if is_db_id(project_id) else None
    if project is None:
        raise NotFound("project not found", path="project")
    return project


def membership_list(*, user, company: Company) -> QuerySet[Membership]:
    """Members of a company the caller belongs to (callers get `company` from `company_get`)."""
    return (
        Membership.objects.filter(company=company, company_id__in=member_company_ids(user))
        .select_related("user")
        .order_by("user__username")
    )


def membership_get(*, user, company: Company, member_id: int) -> Membership:
    membership = (
        membership_list(user=user, company=company).filter(user_id=member_id).first() if is_db_id(member_id) else None
    )
    if membership is None:
        raise NotFound("member not found")
    return membership
