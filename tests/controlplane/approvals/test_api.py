"""Approvals API without workers: a run waiting at an approval, who may decide it, and what a
decision records (the step's attempt, the event with who and when, the next segment once)."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from controlplane.approvals.models import Approval, ApprovalStatus
from controlplane.approvals.services import approvals_expire
from controlplane.executions.models import DeadLetter, EventType, Execution, ExecutionStatus, StepRun
from controlplane.executions.services import execution_start
from controlplane.tenancy.models import Role
from tests.factories import add_member, make_user

pytestmark = pytest.mark.django_db

URL = "/api/v1/approvals"

def decide(client_for, user, approval, capture, **body):
    with capture(execute=True):
        return client_for(user).post(f"{URL}/{approval.pk}/decide", body, format="json")


def test_the_run_waits_and_its_approval_is_listed_with_the_rendered_prompt(waiting, client_for, owner, company):
    execution = waiting()
    assert execution.status == ExecutionStatus.WAITING
    approval = Approval.objects.get(execution=execution)
    assert (approval.status, approval.prompt, approval.requested_by) == (ApprovalStatus.PENDING, "Ship v2?", owner)
    assert approval.deadline > timezone.now() + timedelta(hours=23)  # the default timeout: a day

    body = client_for(owner).get(URL, {"status": "pending", "mine": 1}).json()
    assert [a["id"] for a in body["results"]] == [approval.pk] and body["results"][0]["may_decide"] is True
    viewer = add_member(company, role=Role.VIEWER)
    assert client_for(viewer).get(URL, {"mine": 1}).json()["results"] == []
    assert [a["id"] for a in client_for(viewer).get(URL).json()["results"]] == [approval.pk]
    assert EventType.APPROVAL_REQUESTED in execution.events.values_list("type", flat=True)


def test_approve_records_the_input_as_the_steps_output_and_dispatches_the_next_segment_once(
        waiting, client_for, owner, company, django_capture_on_commit_callbacks, publishes):
    execution = waiting()
    approval = Approval.objects.get(execution=execution)
    admin = add_member(company, make_user("ada"), role=Role.ADMIN)

    response = decide(client_for, admin, approval, django_capture_on_commit_callbacks, decision="approve",
                      comment="go", input={"ticket": "CHG-42"})

    assert response.status_code == 200, response.json()
    assert (response.json()["status"], response.json()["decided_by"]) == ("approved", "ada")
    run = StepRun.objects.get(execution=execution, node_id="ok")
    assert (run.status, run.output, run.worker) == ("succeeded", {"ticket": "CHG-42"}, "ada")
    decided = execution.events.get(type=EventType.APPROVAL_DECIDED).data
    assert (decided["decision"], decided["by"], decided["comment"]) == ("approve", "ada", "go") and decided["at"]
    assert Execution.objects.get(pk=execution.pk).status == ExecutionStatus.RUNNING
    assert [c["root"]["node"] for c in publishes] == ["apply"]

    again = decide(client_for, admin, approval, django_capture_on_commit_callbacks, decision="reject")
    assert (again.status_code, again.json()["error"]) == (409, "already_decided")
    assert len(publishes) == 1


@pytest.mark.parametrize("input, path", [
    ({}, "input"),
    ({"ticket": "nope"}, "input.ticket"),
    ({"ticket": "CHG-1", "extra": 1}, "input"),
    ("text", "input"),
    ({"ticket": "CHG-1", "note": {"deep": [[[[[[[[[[[[[[[[[[["x"]]]]]]]]]]]]]]]]]]]}}, "input"),
    ({"ticket": "CHG-1", "note": "x" * 70_000}, "input"),
], ids=["missing", "too-short", "extra-key", "not-an-object", "deep", "huge"])
def test_bad_input_is_a_400_naming_the_path_and_the_approval_stays_pending(
        waiting, client_for, owner, django_capture_on_commit_callbacks, input, path):
    execution = waiting()
    approval = Approval.objects.get(execution=execution)

    response = decide(client_for, owner, approval, django_capture_on_commit_callbacks, decision="approve", input=input)

    assert response.status_code == 400, response.json()
    assert (response.json()["error"], response.json()["path"]) == ("invalid_input", path)
    assert Approval.objects.get(pk=approval.pk).status == ApprovalStatus.PENDING
    assert not StepRun.objects.filter(execution=execution, node_id="ok").exists()


def test_a_member_who_is_no_approver_gets_403_and_another_tenant_404(
        waiting, client_for, company, outsider, django_capture_on_commit_callbacks):
    approval = Approval.objects.get(execution=waiting())
    editor = add_member(company, role=Role.EDITOR)

    forbidden = decide(client_for, editor, approval, django_capture_on_commit_callbacks, decision="approve",
                       input={"ticket": "CHG-1"})
    hidden = decide(client_for, outsider, approval, django_capture_on_commit_callbacks, decision="reject")

    assert (forbidden.status_code, forbidden.json()["error"]) == (403, "not_an_approver")
    assert hidden.status_code == 404 and client_for(outsider).get(f"{URL}/{approval.pk}").status_code == 404
    assert client_for(outsider).get(URL).json()["results"] == []
    assert Approval.objects.get(pk=approval.pk).status == ApprovalStatus.PENDING


def test_four_eyes_refuses_the_requester_and_lets_another_approver_decide(
        waiting, client_for, owner, company, django_capture_on_commit_callbacks):
    approval = Approval.objects.get(execution=waiting(four_eyes=True))
    other = add_member(company, role=Role.OWNER)

    mine = decide(client_for, owner, approval, django_capture_on_commit_callbacks, decision="approve",
                  input={"ticket": "CHG-1"})
    theirs = decide(client_for, other, approval, django_capture_on_commit_callbacks, decision="approve",
                    input={"ticket": "CHG-1"})

    assert (mine.status_code, mine.json()["error"]) == (403, "not_an_approver")
    assert "four eyes" in mine.json()["detail"]
    assert theirs.status_code == 200


def test_a_named_user_may_decide_without_the_role(waiting, client_for, company, django_capture_on_commit_callbacks):
    named = add_member(company, make_user("vic"), role=Role.VIEWER)
    approval = Approval.objects.get(execution=waiting(approvers={"users": ["vic"]}))
    response = decide(client_for, named, approval, django_capture_on_commit_callbacks, decision="approve",
                      input={"ticket": "CHG-7"})
    assert response.status_code == 200


def test_reject_fails_the_step_with_a_dead_letter_and_the_run_goes_to_the_saga(
        waiting, client_for, owner, django_capture_on_commit_callbacks, monkeypatch):
    sagas = []
    monkeypatch.setattr("controlplane.executions.services.steps._dispatch_saga",
                        lambda execution_id, queue: sagas.append((str(execution_id), queue)))
    execution = waiting()
    approval = Approval.objects.get(execution=execution)

    response = decide(client_for, owner, approval, django_capture_on_commit_callbacks, decision="reject",
                      comment="not today")

    assert response.status_code == 200 and response.json()["status"] == "rejected"
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.COMPENSATING
    assert execution.error["error"]["details"]["reason"] == "rejected"
    assert "not today" in execution.error["error"]["message"]
    letter = DeadLetter.objects.get(execution=execution)
    assert (letter.node_id, letter.error["retryable"]) == ("ok", False)
    assert sagas == [(str(execution.pk), "wg.acme.ingest")]


def test_the_sweep_expires_a_pending_approval_past_its_deadline_and_cancels_one_of_an_ended_run(
        waiting, owner, django_capture_on_commit_callbacks, monkeypatch):
    monkeypatch.setattr("controlplane.executions.services.steps._dispatch_saga", lambda execution_id, queue: None)
    due, ended = waiting(timeout_s=1), waiting()
    Execution.objects.filter(pk=ended.pk).update(status=ExecutionStatus.CANCELLED)
    assert approvals_expire() == {"expired": 0, "cancelled": 1}

    with django_capture_on_commit_callbacks(execute=True):
        assert approvals_expire(now=timezone.now() + timedelta(seconds=2)) == {"expired": 1, "cancelled": 0}

    assert Approval.objects.get(execution=due).status == ApprovalStatus.EXPIRED
    assert Approval.objects.get(execution=ended).status == ApprovalStatus.CANCELLED
    due.refresh_from_db()
    assert due.status == ExecutionStatus.COMPENSATING and due.error["error"]["details"]["reason"] == "timeout"
    assert approvals_expire(now=timezone.now() + timedelta(seconds=3)) == {"expired": 0, "cancelled": 0}


def test_a_cancelled_run_cannot_be_approved(waiting, client_for, owner, django_capture_on_commit_callbacks):
    execution = waiting()
    approval = Approval.objects.get(execution=execution)
    Execution.objects.filter(pk=execution.pk).update(status=ExecutionStatus.CANCELLED)

    response = decide(client_for, owner, approval, django_capture_on_commit_callbacks, decision="approve",
                      input={"ticket": "CHG-1"})

    assert (response.status_code, response.json()["error"]) == (409, "not_waiting")


@pytest.mark.parametrize("config, path", [
    ({"approvers": {}}, "nodes[0].config.approvers"),
    ({"approvers": {"roles": ["boss"]}}, "nodes[0].config.approvers.roles[0]"),
    ({"approvers": {"roles": ["admin"]}, "timeout_s": 0}, "nodes[0].config.timeout_s"),
    ({"approvers": {"roles": ["admin"]}, "input_schema": {"type": "nope"}}, "nodes[0].config.input_schema.type"),
    ({"approvers": {"roles": ["admin"]}, "input_schema": {"properties": {"t": {"type": "string", "pattern": "(a+)+$"}}}},
     "nodes[0].config.input_schema.properties.t.pattern"),
    ({"approvers": {"roles": ["admin"]}, "input_schema": {"properties": {"a": {"properties": {"b": {"properties": {
        "c": {"properties": {"d": {"properties": {"e": {"type": "string"}}}}}}}}}}}},
     "nodes[0].config.input_schema"),
], ids=["no-approver", "unknown-role", "zero-timeout", "bad-schema", "pattern", "deep-schema"])
def test_a_bad_approval_config_is_refused_naming_the_path(client_for, owner, project, config, path):
    from controlplane.workflows.models import Workflow

    workflow = Workflow.objects.create(project=project, slug="w", name="w", created_by=owner)
    response = client_for(owner).post(f"/api/v1/workflows/{workflow.pk}/validate", {"graph": {
        "nodes": [{"id": "ok", "type": "approval", "group": "ingest", "config": config}], "edges": []}}, format="json")
    body = response.json()
    assert response.status_code == 200 and body["ok"] is False, body
    assert path in [e["path"] for e in body["issues"]], body


def test_a_graph_with_an_approval_node_validates(client_for, owner, project):
    from controlplane.workflows.models import Workflow

    workflow = Workflow.objects.create(project=project, slug="w", name="w", created_by=owner)
    body = client_for(owner).post(f"/api/v1/workflows/{workflow.pk}/validate", {"graph": {
        "nodes": [{"id": "plan", "type": "noop", "group": "ingest"},
                  {"id": "ok", "type": "approval", "group": "ingest", "config": {"approvers": {"roles": ["admin"]}}}],
        "edges": [{"from": "plan", "to": "ok"}]}}, format="json").json()
    assert body["ok"] is True, body


def test_a_rejected_approvals_dead_letter_is_not_replayed_as_a_task(
        waiting, client_for, owner, django_capture_on_commit_callbacks, monkeypatch):
    monkeypatch.setattr("controlplane.executions.services.steps._dispatch_saga", lambda execution_id, queue: None)
    approval = Approval.objects.get(execution=waiting())
    decide(client_for, owner, approval, django_capture_on_commit_callbacks, decision="reject")
    letter = DeadLetter.objects.get(execution=approval.execution)

    response = client_for(owner).post(f"/api/v1/dead-letters/{letter.pk}/replay", {}, format="json")

    assert (response.status_code, response.json()["error"]) == (409, "approval_not_replayable")


def test_mine_leaves_out_the_approvals_of_runs_no_longer_waiting(waiting, client_for, owner):
    execution = waiting()
    assert len(client_for(owner).get(URL, {"mine": 1}).json()["results"]) == 1
    Execution.objects.filter(pk=execution.pk).update(status=ExecutionStatus.CANCELLED)
    assert client_for(owner).get(URL, {"mine": 1}).json()["results"] == []
