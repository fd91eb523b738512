"""Approvals end to end on real workers: the run waits for a person holding no worker slot and no
broker message, approve carries on with the decision's input, reject and timeout compensate, the
rules of who may decide hold over HTTP, and a waiting run survives the restart of every process."""
from __future__ import annotations

import os
import signal

import pytest
from django.conf import settings
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from controlplane.approvals.models import Approval, ApprovalStatus
from controlplane.core.celery_app import app
from controlplane.executions.models import DeadLetter, EventType, Execution, ExecutionStatus, StepRun, StepStatus
from controlplane.executions.services import execution_start
from controlplane.executions.services.segments import gate_resolved
from controlplane.tenancy.models import Role
from tests.controlplane.executions.builders import edges, job, make_deployment
from tests.e2e.engine_support import HOSTS, WORKER_ENV, fleet, recorder, run_to_end, wait_for_end  # noqa: F401
from tests.e2e.harness import wait_until
from tests.e2e.test_triggers import start_beat  # noqa: F401  (fixture)
from tests.factories import add_member, make_user

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

URL = "/api/v1/approvals"
FORM = {"type": "object", "required": ["ticket"], "properties": {"ticket": {"type": "string"}}}


def http(node_id, recorder, path, *, group="ingest", cancel=None):
    spec = job(node_id, "http", group=group, config={"url": recorder.url(path), "method": "POST", "json": {}})
    if cancel:
        spec["compensate"] = {"type": "http", "config": {"url": recorder.url(cancel), "method": "POST"}}
    return spec


def pipeline(project, owner, recorder, **approval):
    """Plan -> Approval -> Apply -> Test: plan is compensable, apply reads the approval's input."""
    config = {"approvers": {"roles": ["admin"]}, "prompt": "Apply {{ .trigger.change }}?", "input_schema": FORM,
              **approval}
    return make_deployment(project, [
        http("plan", recorder, "/plan", cancel="/unplan"),
        job("ok", "approval", config=config),
        job("apply", "python", group="load", config={"callable": "echo", "kwargs": {
            "ticket": "{{ .steps.ok.output.ticket }}", "change": "{{ .trigger.change }}"}}),
        http("test", recorder, "/test", group="load"),
    ], edges(("plan", "ok"), ("ok", "apply"), ("apply", "test")), user=owner)


def start_waiting(deployment, user, timeout: float = 30) -> Execution:
    execution, _ = execution_start(deployment=deployment, input={"change": "CHG-1"}, user=user)
    return wait_until(lambda: Execution.objects.filter(pk=execution.pk, status=ExecutionStatus.WAITING).first(),
                      timeout=timeout, what="the run to wait for its approval")


def decide(client_for, user, approval, **body):
    return client_for(user).post(f"{URL}/{approval.pk}/decide", body, format="json")


@pytest.fixture
def approver(company):
    return add_member(company, make_user("ada"), role=Role.ADMIN)


def test_approve_carries_on_and_downstream_steps_read_the_decisions_input(
        fleet, recorder, project, owner, approver, client_for):
    execution = start_waiting(pipeline(project, owner, recorder), owner)
    approval = Approval.objects.get(execution=execution)
    assert approval.prompt == "Apply CHG-1?" and recorder.paths() == ["/plan"]

    response = decide(client_for, approver, approval, decision="approve", comment="lgtm", input={"ticket": "T-9"})
    assert response.status_code == 200, response.json()

    finished = wait_for_end(execution)
    assert finished.status == ExecutionStatus.SUCCEEDED
    runs = {r.node_id: r for r in StepRun.objects.filter(execution=execution, is_compensation=False)}
    assert runs["ok"].output == {"ticket": "T-9"} and runs["ok"].worker == "ada"
    assert runs["apply"].output == {"ticket": "T-9", "change": "CHG-1"}
    assert recorder.paths() == ["/plan", "/test"]
    timeline = client_for(owner).get(f"/api/v1/executions/{execution.pk}/timeline").json()
    decided = [e for e in client_for(owner).get(f"/api/v1/executions/{execution.pk}/events").json()["results"]
               if e["type"] == EventType.APPROVAL_DECIDED]
    assert decided and decided[0]["data"]["by"] == "ada" and decided[0]["data"]["at"]
    assert timeline  # the run's timeline renders with its gate


@pytest.mark.parametrize("how", ["reject", "timeout"])
def test_reject_and_timeout_fail_the_step_and_compensate_the_completed_steps(
        fleet, recorder, project, owner, approver, client_for, start_worker, start_beat, how):
    timeout_s = 2 if how == "timeout" else 3600
    execution = start_waiting(pipeline(project, owner, recorder, timeout_s=timeout_s), owner)
    approval = Approval.objects.get(execution=execution)
    if how == "reject":
        assert decide(client_for, approver, approval, decision="reject", comment="no").status_code == 200
    else:
        # Beat's sweep (every second here) expires it: started only now, as after a restart of beat.
        sweep_every_second()
        start_worker([settings.CELERY_TASK_DEFAULT_QUEUE], "control1@e2e", extra_env=WORKER_ENV)
        start_beat()

    finished = wait_for_end(execution, timeout=60)

    assert finished.status == ExecutionStatus.COMPENSATED
    assert recorder.paths() == ["/plan", "/unplan"]
    expected = ApprovalStatus.REJECTED if how == "reject" else ApprovalStatus.EXPIRED
    assert Approval.objects.get(pk=approval.pk).status == expected
    letter = DeadLetter.objects.get(execution=execution)
    assert letter.node_id == "ok" and letter.error["details"]["reason"] == ("rejected" if how == "reject" else "timeout")
    assert not StepRun.objects.filter(execution=execution, node_id__in=["apply", "test"]).exists()


def test_a_waiting_run_holds_no_worker_slot_and_no_broker_message(
        fleet, recorder, project, owner, redis_test_db):
    execution = start_waiting(pipeline(project, owner, recorder), owner)

    # Nothing of the run is queued, reserved, or waiting for a countdown on any worker ...
    for slug in HOSTS:
        assert redis_test_db.llen(fleet.queue(slug)) == 0
    inspect = app.control.inspect(destination=list(HOSTS.values()), timeout=3)
    for answer in (inspect.reserved() or {}, inspect.scheduled() or {}, inspect.active() or {}):
        assert all(str(execution.pk) not in repr(tasks) for tasks in answer.values()), answer
    assert not any(str(execution.pk) in repr(v) for v in redis_test_db.hvals("unacked"))

    # ... and the one worker (concurrency 1) of each group runs another run meanwhile.
    other = make_deployment(project, [job("a", "python", config={"callable": "echo", "kwargs": {"n": 1}}),
                                      job("b", "python", group="load", config={"callable": "echo"})],
                            edges(("a", "b")), user=owner)
    assert run_to_end(other, owner).status == ExecutionStatus.SUCCEEDED
    assert Execution.objects.get(pk=execution.pk).status == ExecutionStatus.WAITING


def test_who_may_decide_over_http_four_eyes_non_approver_other_tenant_and_twice(
        fleet, recorder, project, owner, company, outsider, approver, client_for):
    execution = start_waiting(pipeline(project, owner, recorder, four_eyes=True,
                                       approvers={"roles": ["owner"], "users": ["ada"]}), owner)
    approval = Approval.objects.get(execution=execution)
    editor = add_member(company, role=Role.EDITOR)
    ticket = {"ticket": "T-1"}

    requester = decide(client_for, owner, approval, decision="approve", input=ticket)
    stranger = decide(client_for, editor, approval, decision="approve", input=ticket)
    hidden = decide(client_for, outsider, approval, decision="approve", input=ticket)
    assert [(r.status_code, r.json()["error"]) for r in (requester, stranger, hidden)] == [
        (403, "not_an_approver"), (403, "not_an_approver"), (404, "not_found")]
    assert Approval.objects.get(pk=approval.pk).status == ApprovalStatus.PENDING

    mine = client_for(approver).get(URL, {"mine": 1, "status": "pending"}).json()["results"]
    assert [a["id"] for a in mine] == [approval.pk]
    assert client_for(owner).get(URL, {"mine": 1}).json()["results"] == []  # four eyes: not the requester's
    assert decide(client_for, approver, approval, decision="approve", input=ticket).status_code == 200
    twice = decide(client_for, approver, approval, decision="reject")
    assert (twice.status_code, twice.json()["error"]) == (409, "already_decided")
    assert wait_for_end(execution).status == ExecutionStatus.SUCCEEDED


def sweep_every_second():
    every, _ = IntervalSchedule.objects.get_or_create(every=1, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.update_or_create(name="flowplane.sweep", defaults={
        "task": "flowplane.sweep", "interval": every, "enabled": True})


def test_a_waiting_run_survives_the_restart_of_every_worker_and_of_beat(
        fleet, recorder, project, owner, approver, client_for, start_worker, start_beat, landing_dir):
    sweep_every_second()
    control = start_worker([settings.CELERY_TASK_DEFAULT_QUEUE], "control1@e2e", extra_env=WORKER_ENV)
    beat = start_beat()
    execution = start_waiting(pipeline(project, owner, recorder), owner)
    for worker in [*fleet.workers.values(), control]:
        worker.kill9()
    os.killpg(beat.pid, signal.SIGKILL)
    beat.wait(timeout=10)
    env = {**WORKER_ENV, "LANDING_STORE_URL": f"file://{landing_dir}"}
    for slug, host in HOSTS.items():
        start_worker([fleet.queue(slug)], host.replace("1@", "2@"), extra_env=env)
    control = start_worker([settings.CELERY_TASK_DEFAULT_QUEUE], "control2@e2e", extra_env=WORKER_ENV)
    start_beat()
    wait_until(lambda: any("flowplane.sweep[" in line and "succeeded" in line for line in control.log_text().splitlines()),
               timeout=30, what="a sweep by the new beat and worker")
    approval = Approval.objects.get(execution=execution)
    assert approval.status == ApprovalStatus.PENDING
    assert Execution.objects.get(pk=execution.pk).status == ExecutionStatus.WAITING  # the sweeps left it alone

    assert decide(client_for, approver, approval, decision="approve", input={"ticket": "T-2"}).status_code == 200

    finished = wait_for_end(execution, timeout=60)
    assert finished.status == ExecutionStatus.SUCCEEDED
    workers = dict(StepRun.objects.filter(execution=execution, is_compensation=False).values_list("node_id", "worker"))
    assert workers == {"plan": "ingest1@e2e", "ok": "ada", "apply": "load2@e2e", "test": "load2@e2e"}


def test_a_duplicate_gate_resolved_publishes_the_next_segment_once(
        fleet, recorder, project, owner, approver, client_for):
    execution = start_waiting(pipeline(project, owner, recorder), owner)
    approval = Approval.objects.get(execution=execution)
    assert decide(client_for, approver, approval, decision="approve", input={"ticket": "T-3"}).status_code == 200
    for _ in range(3):
        gate_resolved(execution.pk, "ok", by="test")

    assert wait_for_end(execution).status == ExecutionStatus.SUCCEEDED
    for _ in range(2):
        gate_resolved(execution.pk, "ok", by="test")  # after the end too: nothing
    assert execution.events.filter(type=EventType.SEGMENT_DISPATCHED).count() == 1
    # `apply` is the only task the load worker gets before `test`: one message each, no duplicate.
    received = sum(1 for line in fleet.workers["load"].log_text().splitlines()
                   if "Task flowplane.step[" in line and "] received" in line)
    assert received == 2, fleet.workers["load"].log_text()[-3000:]
    attempts = StepRun.objects.filter(execution=execution, is_compensation=False)
    assert sorted(attempts.values_list("node_id", "status")) == [
        ("apply", StepStatus.SUCCEEDED), ("ok", StepStatus.SUCCEEDED), ("plan", StepStatus.SUCCEEDED),
        ("test", StepStatus.SUCCEEDED)]


def test_two_decisions_at_once_one_wins_and_the_next_segment_is_published_once(
        fleet, recorder, project, owner, company, approver):
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connections

    from controlplane.approvals.services import approval_decide
    from controlplane.core.errors import Conflict

    other = add_member(company, make_user("bob"), role=Role.ADMIN)
    execution = start_waiting(pipeline(project, owner, recorder), owner)
    approval = Approval.objects.get(execution=execution)

    def attempt(user, decision):
        try:
            approval_decide(approval=approval, user=user, decision=decision, input={"ticket": "T-4"})
            return decision
        except Conflict as exc:
            return exc.code
        finally:
            connections.close_all()

    with ThreadPoolExecutor(2) as pool:
        results = sorted(pool.map(lambda args: attempt(*args), [(approver, "approve"), (other, "reject")]))

    assert results in (["already_decided", "approve"], ["already_decided", "reject"])
    finished = wait_for_end(execution, timeout=60)
    assert finished.status == (ExecutionStatus.SUCCEEDED if "approve" in results else ExecutionStatus.COMPENSATED)
    assert StepRun.objects.filter(execution=execution, node_id="ok").count() == 1
    assert execution.events.filter(type=EventType.APPROVAL_DECIDED).count() == 1
