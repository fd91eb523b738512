"""Cancelling a run that waits at an approval: it holds no task, so the cancel is only its record;
the approval can no longer be decided, and the sweep closes it."""
from __future__ import annotations

import pytest

from controlplane.approvals.models import Approval, ApprovalStatus
from controlplane.approvals.services import approvals_expire
from controlplane.executions.models import EventType, Execution, ExecutionStatus
from controlplane.tenancy.models import Role
from tests.factories import add_member, make_user

pytestmark = pytest.mark.django_db


def test_a_waiting_run_is_cancelled_and_its_approval_closed(waiting, client_for, owner, company,
                                                            django_capture_on_commit_callbacks, publishes):
    execution = waiting()
    approval = Approval.objects.get(execution=execution)
    admin = add_member(company, make_user("ada"), role=Role.ADMIN)

    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(owner).post(f"/api/v1/executions/{execution.pk}/cancel", {"reason": "not today"},
                                          format="json")

    assert response.status_code == 200 and response.json()["status"] == ExecutionStatus.CANCELLED
    states = {e.data["node_id"]: e.data["state"] for e in execution.events.filter(type=EventType.STEP_CANCELLED)}
    assert states == {"ok": "pending", "apply": "pending"}
    decided = client_for(admin).post(f"/api/v1/approvals/{approval.pk}/decide", {"decision": "approve"},
                                     format="json")
    assert (decided.status_code, decided.json()["error"]) == (409, "not_waiting")
    assert approvals_expire()["cancelled"] == 1
    assert Approval.objects.get(pk=approval.pk).status == ApprovalStatus.CANCELLED
    assert Execution.objects.get(pk=execution.pk).status == ExecutionStatus.CANCELLED
    assert publishes == []  # nothing of the run was published again
