"""The approvals inbox page: what the signed-in user may decide, the input form drawn from the
schema, approve / reject through the page (CSRF-protected POSTs), refusals said plainly."""
from __future__ import annotations

import pytest

from controlplane.approvals.models import Approval, ApprovalStatus
from controlplane.executions.models import Execution, ExecutionStatus, StepRun
from controlplane.tenancy.models import Role
from controlplane.web.approval_pages import form_fields
from tests.controlplane.approvals.conftest import publishes, waiting  # noqa: F401  (fixtures)
from tests.factories import add_member

pytestmark = pytest.mark.django_db

INBOX = "/approvals/"


def test_the_inbox_lists_what_the_user_may_decide_with_the_form_of_its_schema(page_client, owner, company, waiting):
    execution = waiting()
    approval = Approval.objects.get(execution=execution)

    html = page_client(owner).get(INBOX).content.decode()

    assert f'data-approval="{approval.pk}"' in html and "Ship v2?" in html
    assert 'name="input.ticket"' in html and 'name="input.note"' in html
    assert 'href="/approvals/"' in html  # in the nav
    viewer = add_member(company, role=Role.VIEWER)
    assert f'data-approval="{approval.pk}"' not in page_client(viewer).get(INBOX).content.decode()


def test_approve_from_the_page_records_the_input_and_the_run_carries_on(
        page_client, owner, waiting, django_capture_on_commit_callbacks, publishes):
    execution = waiting()
    approval = Approval.objects.get(execution=execution)

    with django_capture_on_commit_callbacks(execute=True):
        response = page_client(owner).post(f"/approvals/{approval.pk}/decide/", {
            "decision": "approve", "input.ticket": "CHG-5", "input.note": "", "comment": "ok"}, follow=True)

    assert response.status_code == 200 and "approved" in response.content.decode()
    assert StepRun.objects.get(execution=execution, node_id="ok").output == {"ticket": "CHG-5"}
    assert Execution.objects.get(pk=execution.pk).status == ExecutionStatus.RUNNING
    assert len(publishes) == 1


def test_bad_input_comes_back_as_a_message_and_the_approval_stays_pending(page_client, owner, waiting):
    approval = Approval.objects.get(execution=waiting())

    response = page_client(owner).post(f"/approvals/{approval.pk}/decide/", {
        "decision": "approve", "input.ticket": "nope"}, follow=True)

    assert "input.ticket" in response.content.decode()
    assert Approval.objects.get(pk=approval.pk).status == ApprovalStatus.PENDING


def test_another_tenant_gets_404_and_a_get_cannot_decide(page_client, owner, outsider, waiting):
    approval = Approval.objects.get(execution=waiting())
    assert page_client(outsider).post(f"/approvals/{approval.pk}/decide/", {"decision": "reject"}).status_code == 404
    assert page_client(owner).get(f"/approvals/{approval.pk}/decide/").status_code == 405


def test_the_decide_form_needs_csrf(owner, waiting):
    from django.test import Client

    approval = Approval.objects.get(execution=waiting())
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    assert client.post(f"/approvals/{approval.pk}/decide/", {"decision": "reject"}).status_code == 403
    assert Approval.objects.get(pk=approval.pk).status == ApprovalStatus.PENDING


def test_the_waterfall_shows_the_wait_for_approval(page_client, owner, waiting):
    execution = waiting()
    html = page_client(owner).get(f"/executions/{execution.pk}/").content.decode()
    assert 'data-step="ok"' in html and 'data-gate="approval"' in html and 'data-status="waiting"' in html
    assert "waiting for an approval" in html


@pytest.mark.parametrize("schema, names", [
    (None, []),
    ({"type": "object", "properties": {"n": {"type": "integer"}, "go": {"type": "boolean"}}}, ["n", "go"]),
    ({"type": "object", "properties": {"deep": {"type": "object"}}}, None),
    ({"type": "array"}, None),
], ids=["none", "simple", "nested", "not-an-object"])
def test_form_fields_follow_the_schema(schema, names):
    fields = form_fields(schema)
    assert (None if fields is None else [f["name"] for f in fields]) == names
