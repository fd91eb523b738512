"""Reads of approvals, scoped to the caller's companies (another tenant's approval is a 404)."""
from __future__ import annotations

from django.db.models import QuerySet

from controlplane.approvals.models import Approval, ApprovalStatus
from controlplane.approvals.services import approval_why_not
from controlplane.executions.models import ExecutionStatus
from controlplane.tenancy.access import get_visible, member_company_ids
from controlplane.tenancy.models import Membership, Role

# `mine` is decided per approval in Python (who may decide is JSON, and SQLite has no JSON
# containment): at most this many pending approvals are looked at, newest first.
MINE_SCAN = 1000


def approval_list(*, user, status: str | None = None, mine: bool = False, execution_id=None) -> QuerySet | list:
    """Approvals of the caller's companies, newest first; `status` narrows them, `mine` keeps the
    pending ones the caller may decide now (their run is waiting; a list then, not a queryset)."""
    qs = Approval.objects.filter(company_id__in=member_company_ids(user)).select_related(
        "execution__version", "decided_by", "requested_by")
    if status:
        qs = qs.filter(status=status)
    if execution_id is not None:
        qs = qs.filter(execution_id=execution_id)
    if not mine:
        return qs
    roles = {company: Role(role) for company, role in Membership.objects.filter(user=user).values_list(
        "company_id", "role")}
    pending = qs.filter(status=ApprovalStatus.PENDING, execution__status=ExecutionStatus.WAITING)[:MINE_SCAN]
    return [a for a in pending if approval_why_not(a, user, role=roles.get(a.company_id)) is None]


def approval_get(*, user, approval_id) -> Approval:
    return get_visible(approval_list(user=user), approval_id, "approval")
