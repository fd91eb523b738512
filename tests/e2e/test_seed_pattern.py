"""The seeds' headline pattern end to end on real workers: Plan -> Approval -> Apply -> Test ->
Notify. A person approves over the API with a change ticket as the decision's input; apply reads
it; the notify step posts to a Slack-compatible webhook (a local server on 127.0.0.1 whose URL is
a company secret) with text templated from the run; and the approval's decision, who and when, is
on the run's events. A rejection instead undoes the plan and notifies nothing."""
from __future__ import annotations

import pytest

from controlplane.approvals.models import Approval
from controlplane.catalog.services import secret_set
from controlplane.executions.models import EventType, Execution, ExecutionStatus, StepRun
from controlplane.executions.services import execution_start
from controlplane.tenancy.models import Role
from tests.controlplane.executions.builders import edges, job, make_deployment
from tests.e2e.engine_support import fleet, recorder, wait_for_end  # noqa: F401  (fixtures)
from tests.e2e.harness import wait_until
from tests.e2e.test_notify import TOKEN_PATH, slack  # noqa: F401  (fixture)
from tests.factories import add_member, make_user

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

FORM = {"type": "object", "required": ["ticket"], "properties": {"ticket": {"type": "string", "maxLength": 20}}}


def seed_pipeline(project, owner, recorder):
    plan = job("plan", "http", config={"url": recorder.url("/plan"), "method": "POST",
                                       "json": {"change": "{{ .trigger.change }}"}})
    plan["compensate"] = {"type": "http", "config": {"url": recorder.url("/unplan"), "method": "POST"}}
    return make_deployment(project, [
        plan,
        job("approve", "approval", config={"approvers": {"roles": ["admin"]}, "four_eyes": True,
                                           "prompt": "Apply {{ .trigger.change }}?", "input_schema": FORM}),
        job("apply", "python", group="load", config={"callable": "echo", "kwargs": {
            "ticket": "{{ .steps.approve.output.ticket }}", "change": "{{ .trigger.change }}"}}),
        job("test", "http", group="load", config={"url": recorder.url("/smoke"), "method": "POST",
                                                  "json": {"ticket": "{{ .steps.apply.output.ticket }}"}}),
        job("notify", "notify", config={
            "channel": "slack", "webhook": {"$secret": "deploys-hook"},
            "text": "{{ .trigger.change }} applied under {{ .steps.approve.output.ticket }}"}),
    ], edges(("plan", "approve"), ("approve", "apply"), ("apply", "test"), ("test", "notify")), user=owner)


def waiting_run(deployment, owner) -> Execution:
    execution, _ = execution_start(deployment=deployment, input={"change": "CHG-7"}, user=owner)
    return wait_until(lambda: Execution.objects.filter(pk=execution.pk, status=ExecutionStatus.WAITING).first(),
                      timeout=30, what="the run to wait for its approval")


@pytest.fixture
def approver(company):
    return add_member(company, make_user("grace"), role=Role.ADMIN)


def test_plan_approval_apply_test_notify(fleet, recorder, slack, project, company, owner, approver, client_for):
    secret_set(company=company, name="deploys-hook", value=slack.base + TOKEN_PATH)
    execution = waiting_run(seed_pipeline(project, owner, recorder), owner)
    assert recorder.paths() == ["/plan"] and slack.seen == []
    approval = Approval.objects.get(execution=execution)

    # The requester may not approve their own change (four eyes); a bad ticket is refused by the form.
    assert client_for(owner).post(f"/api/v1/approvals/{approval.pk}/decide",
                                  {"decision": "approve", "input": {"ticket": "T-1"}}, format="json").status_code == 403
    bad = client_for(approver).post(f"/api/v1/approvals/{approval.pk}/decide",
                                    {"decision": "approve", "input": {"ticket": 42}}, format="json")
    assert bad.status_code == 400, bad.json()
    ok = client_for(approver).post(f"/api/v1/approvals/{approval.pk}/decide",
                                   {"decision": "approve", "comment": "go", "input": {"ticket": "T-77"}}, format="json")
    assert ok.status_code == 200, ok.json()

    finished = wait_for_end(execution, timeout=60)
    assert finished.status == ExecutionStatus.SUCCEEDED, finished.error
    runs = {r.node_id: r for r in StepRun.objects.filter(execution=execution, is_compensation=False)}
    assert runs["apply"].output == {"ticket": "T-77", "change": "CHG-7"}
    assert recorder.paths() == ["/plan", "/smoke"]
    [posted] = slack.seen
    assert posted["path"] == TOKEN_PATH and posted["body"]["text"] == "CHG-7 applied under T-77"
    assert posted["key"] == f"{execution.pk}:notify:0"
    events = client_for(owner).get(f"/api/v1/executions/{execution.pk}/events").json()["results"]
    [decided] = [e for e in events if e["type"] == EventType.APPROVAL_DECIDED]
    assert decided["data"]["by"] == "grace" and decided["data"]["at"]


def test_a_rejected_change_is_unplanned_and_notifies_nobody(
        fleet, recorder, slack, project, company, owner, approver, client_for):
    secret_set(company=company, name="deploys-hook", value=slack.base + TOKEN_PATH)
    execution = waiting_run(seed_pipeline(project, owner, recorder), owner)
    approval = Approval.objects.get(execution=execution)
    response = client_for(approver).post(f"/api/v1/approvals/{approval.pk}/decide",
                                         {"decision": "reject", "comment": "not today"}, format="json")
    assert response.status_code == 200, response.json()

    finished = wait_for_end(execution, timeout=60)
    assert finished.status == ExecutionStatus.COMPENSATED
    assert recorder.paths() == ["/plan", "/unplan"] and slack.seen == []
