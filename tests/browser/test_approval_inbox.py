"""Approving a waiting run from the approvals inbox in a real browser, on real workers: the run
waits, the approver fills the form drawn from the approval's schema, approves, and the run finishes
with the input as the step's output; its waterfall shows the wait and who decided."""
from __future__ import annotations

import pytest

from controlplane.executions.models import Execution, ExecutionStatus, StepRun
from controlplane.tenancy.models import Role
from tests.controlplane.executions.builders import edges, job, make_deployment
from tests.factories import add_member, make_user

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

FORM = {"type": "object", "required": ["ticket"], "properties": {
    "ticket": {"type": "string", "title": "Change ticket"}, "risk": {"type": "string", "enum": ["low", "high"]}}}


def test_approve_a_waiting_run_from_the_inbox(sign_in, live_server, owner, company, project, fleet):
    from controlplane.executions.services import execution_start
    from tests.e2e.engine_support import wait_for_end
    from tests.e2e.harness import wait_until

    approver = add_member(company, make_user("ada"), role=Role.ADMIN)
    deployment = make_deployment(project, [
        job("plan", "python", config={"callable": "echo", "kwargs": {"change": "{{ .trigger.change }}"}}),
        job("ok", "approval", config={"approvers": {"roles": ["admin"]}, "four_eyes": True, "input_schema": FORM,
                                      "prompt": "Apply {{ .steps.plan.output.change }}?"}),
        job("apply", "python", group="load", config={"callable": "echo", "kwargs": {
            "ticket": "{{ .steps.ok.output.ticket }}", "risk": "{{ .steps.ok.output.risk }}"}}),
    ], edges(("plan", "ok"), ("ok", "apply")), user=owner)
    execution, _ = execution_start(deployment=deployment, input={"change": "CHG-77"}, user=owner)
    wait_until(lambda: Execution.objects.filter(pk=execution.pk, status=ExecutionStatus.WAITING).exists(),
               timeout=30, what="the run to wait for its approval")

    page = sign_in(owner)  # the requester: four eyes keep it out of their inbox
    page.click("nav >> text=Approvals")
    page.wait_for_selector("#nothing-pending")

    page.context.clear_cookies()
    page = sign_in(approver)
    page.click("nav >> text=Approvals")
    section = page.locator(f"section.approval[data-execution='{execution.pk}']")
    assert "Apply CHG-77?" in section.locator(".prompt").inner_text()
    section.locator("input[name='input.ticket']").fill("T-123")
    section.locator("select[name='input.risk']").select_option("high")
    section.locator("input[name=comment]").fill("ship it")
    section.locator("button[value=approve]").click()
    page.wait_for_selector("p.message-success")
    assert "approved" in page.locator("p.message-success").inner_text()

    assert wait_for_end(execution, timeout=30).status == ExecutionStatus.SUCCEEDED
    assert StepRun.objects.get(execution=execution, node_id="apply").output == {"ticket": "T-123", "risk": "high"}
    page.goto(f"{live_server.url}/executions/{execution.pk}/")
    row = page.locator("#waterfall .wf-row[data-step=ok]")
    assert row.get_attribute("data-gate") == "approval" and row.get_attribute("data-status") == "succeeded"
    assert "approved by ada" in row.locator(".wf-gate").inner_text()
    steps = [r.get_attribute("data-step") for r in page.locator("#waterfall .wf-row").all()]
    assert steps == ["plan", "ok", "apply"]
