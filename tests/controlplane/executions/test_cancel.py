"""Cancel without workers: what the cancel records, what a step of a cancelled run can still do,
the saga of a cancel with compensate, races with the run's own end, and the API's input checks."""
from __future__ import annotations

import pytest
from django.db import transaction

from controlplane.core.errors import Conflict
from controlplane.executions.models import DeadLetter, EventType, Execution, ExecutionStatus, StepRun, StepStatus
from controlplane.executions.services import (
    Delivery,
    compensation_execute,
    execution_cancel,
    saga_finish,
    saga_start,
)
from controlplane.executions.services.steps import _claim_locked, _record_step
from tests.controlplane.executions.builders import edges, job
from tests.controlplane.executions.test_services import DELIVERY, start, step

pytestmark = pytest.mark.django_db

URL = "/api/v1/executions"
BOOM = {"message": "boom", "retryable": True, "details": {}}


def claim(execution, node_id, shard=0, shards=1):
    """A step claimed and in flight (running, committed), as a worker leaves it while it runs."""
    with transaction.atomic():
        _, run, job_, context = _claim_locked(execution.pk, node_id, shard, shards, DELIVERY, deferred=False)
    return run, job_, context


def cancelled_states(execution):
    return [(e.data["node_id"], e.data["shard"], e.data["state"])
            for e in execution.events.filter(type=EventType.STEP_CANCELLED).order_by("seq")]


def test_cancel_records_every_open_step_and_interrupts_only_interruptible_attempts(
        groups, project, owner, django_capture_on_commit_callbacks):
    execution = start(project, owner, [
        job("a"),
        job("b", "delay", config={"seconds": 1}, interruptible=True),
        job("c", "delay", config={"seconds": 1}, replicas=2),
        job("d"),
    ], edges(("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")))
    assert step(execution, "a").action == "done"
    run_b, _, _ = claim(execution, "b")
    run_c, _, _ = claim(execution, "c", 0, 2)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        cancelled = execution_cancel(execution=execution, user=owner, reason="changed my mind")

    assert cancelled.status == ExecutionStatus.CANCELLED and cancelled.finished_at is not None
    assert len(callbacks) == 1  # the revoke, after commit
    run_b.refresh_from_db(), run_c.refresh_from_db()
    assert (run_b.status, run_b.error["details"]["reason"]) == (StepStatus.CANCELLED, "cancelled")
    assert run_c.status == StepStatus.RUNNING  # not interruptible: it finishes its attempt
    assert cancelled_states(execution) == [("b", 0, "interrupted"), ("c", 0, "finishing"), ("c", 1, "pending"),
                                           ("d", 0, "pending")]
    data = execution.events.get(type=EventType.EXECUTION_CANCELLED).data
    assert data == {"by": "owner", "reason": "changed my mind", "compensate": False,
                    "interrupted": [{"node_id": "b", "shard": 0, "attempt": 1}],
                    "finishing": [{"node_id": "c", "shard": 0, "attempt": 1}]}
    from controlplane.executions.selectors import execution_timeline

    timeline = execution_timeline(execution=Execution.objects.get(pk=execution.pk))
    assert [(c["node_id"], c["shard"], c["state"]) for c in timeline["cancelled"]] == cancelled_states(execution)
    assert {(s["node_id"], s["status"]) for s in timeline["steps"]} == {
        ("a", StepStatus.SUCCEEDED), ("b", StepStatus.CANCELLED), ("c", StepStatus.RUNNING)}


def test_a_step_of_a_cancelled_run_records_its_attempt_but_moves_nothing_on(groups, project, owner):
    execution = start(project, owner, [
        job("a", "delay", config={"seconds": 1}, interruptible=True, retry={"max_attempts": 3}),
        job("b", "delay", config={"seconds": 1}, retry={"max_attempts": 3}),
        job("c"),
    ], edges(("a", "c"), ("b", "c")))
    run_a, job_a, context_a = claim(execution, "a")
    run_b, job_b, context_b = claim(execution, "b")
    execution_cancel(execution=execution, user=owner)

    # The interrupted one reports anyway (the SIGTERM came too late): dropped.
    late = _record_step(execution.pk, run_a.pk, job_a, {}, {"done": True}, None, context_a, DELIVERY)
    # The finishing one fails, retryably: recorded failed, not retried, not dead-lettered.
    failed = _record_step(execution.pk, run_b.pk, job_b, {}, None, BOOM, context_b, DELIVERY)
    after = step(execution, "c")

    assert late.action == "ignore" and failed.action == "fail" and after.action == "ignore"
    assert dict(StepRun.objects.filter(execution=execution).values_list("node_id", "status")) == {
        "a": StepStatus.CANCELLED, "b": StepStatus.FAILED}
    assert not DeadLetter.objects.filter(execution=execution).exists()
    assert not execution.events.filter(type=EventType.STEP_RETRYING).exists()
    assert Execution.objects.get(pk=execution.pk).status == ExecutionStatus.CANCELLED


def test_cancelling_twice_or_after_the_end_is_not_cancellable(groups, project, owner):
    finished = start(project, owner, [job("a")])
    assert step_final(finished, "a").status == ExecutionStatus.SUCCEEDED
    with pytest.raises(Conflict) as refused:
        execution_cancel(execution=finished, user=owner)
    assert refused.value.code == "not_cancellable"

    running = start(project, owner, [job("a")])
    execution_cancel(execution=running, user=owner)
    with pytest.raises(Conflict):
        execution_cancel(execution=running, user=owner)
    # The run's own last task, arriving after the cancel, finds it cancelled and stays out.
    assert step_final(running, "a").action == "ignore"
    assert Execution.objects.get(pk=running.pk).status == ExecutionStatus.CANCELLED
    assert running.events.filter(type=EventType.EXECUTION_CANCELLED).count() == 1


def step_final(execution, node_id):
    from controlplane.executions.services import step_execute

    return step_execute(execution_id=execution.pk, node_id=node_id, shard=0, shard_count=1, delivery=DELIVERY,
                        final=True)


def test_cancel_with_compensate_undoes_the_completed_steps_and_ends_cancelled(
        groups, project, owner, django_capture_on_commit_callbacks):
    undo = {"type": "noop"}
    execution = start(project, owner, [
        job("a", compensate=undo), job("b", compensate=undo), job("c", "delay", config={"seconds": 1},
                                                                  compensate=undo),
    ], edges(("a", "b"), ("b", "c")))
    step(execution, "a"), step(execution, "b")
    run_c, job_c, context_c = claim(execution, "c")

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        compensating = execution_cancel(execution=execution, user=owner, compensate=True)

    assert compensating.status == ExecutionStatus.COMPENSATING and compensating.finished_at is None
    assert len(callbacks) == 2  # the revoke, then the saga
    saga = Delivery(task_id="saga-1", queue="wg.acme.ingest")
    # The saga waits while c still runs ...
    assert saga_start(execution_id=execution.pk, delivery=saga).action == "wait"
    _record_step(execution.pk, run_c.pk, job_c, {}, {"ok": True}, None, context_c, DELIVERY)
    # ... then undoes what completed, c (completed after the cancel) included, latest first.
    assert saga_start(execution_id=execution.pk, delivery=saga).action == "done"
    plan = execution.events.get(type=EventType.SAGA_COMPENSATING).data["steps"]
    assert [s["node_id"] for s in plan] == ["c", "b", "a"]
    for node_id in ("c", "b", "a"):
        original = StepRun.objects.get(execution=execution, node_id=node_id, is_compensation=False)
        outcome = compensation_execute(execution_id=execution.pk, step_run_id=original.pk,
                                       delivery=Delivery(task_id=f"undo-{node_id}", queue="wg.acme.ingest"))
        assert outcome.action == "done"
    assert saga_finish(execution_id=execution.pk, delivery=saga).status == ExecutionStatus.CANCELLED

    final = Execution.objects.get(pk=execution.pk)
    assert final.status == ExecutionStatus.CANCELLED and final.finished_at is not None
    assert [s["node_id"] for s in final.events.get(type=EventType.SAGA_COMPENSATED).data["compensated"]] == \
        ["c", "b", "a"]


def test_cancel_with_compensate_and_nothing_completed_ends_cancelled_not_failed(groups, project, owner):
    execution = start(project, owner, [job("a", compensate={"type": "noop"})])
    execution_cancel(execution=execution, user=owner, compensate=True)
    saga = Delivery(task_id="saga-1", queue="wg.acme.ingest")

    assert saga_start(execution_id=execution.pk, delivery=saga).action == "done"
    assert saga_finish(execution_id=execution.pk, delivery=saga).status == ExecutionStatus.CANCELLED
    assert execution.events.get(type=EventType.SAGA_COMPENSATED).data == {"compensated": []}


@pytest.mark.parametrize("body, path", [
    ({"compensate": "perhaps"}, "compensate"),
    ({"compensate": None}, "compensate"),
    ({"reason": "x" * 2001}, "reason"),
    ({"reason": {"nested": ["deep"]}}, "reason"),
])
def test_the_api_refuses_bad_input_and_leaves_the_run_running(groups, project, owner, client_for, body, path):
    execution = start(project, owner, [job("a")])

    response = client_for(owner).post(f"{URL}/{execution.pk}/cancel", body, format="json")

    assert response.status_code == 400 and response.json()["path"] == path, response.json()
    assert Execution.objects.get(pk=execution.pk).status == ExecutionStatus.RUNNING


def test_the_api_cancels_with_compensate_and_a_reason(groups, project, owner, client_for):
    execution = start(project, owner, [job("a")])

    response = client_for(owner).post(f"{URL}/{execution.pk}/cancel", {"compensate": True, "reason": "oops"},
                                      format="json")

    assert response.status_code == 200 and response.json()["status"] == ExecutionStatus.COMPENSATING
    data = execution.events.get(type=EventType.EXECUTION_CANCELLED).data
    assert (data["compensate"], data["reason"]) == (True, "oops")
    again = client_for(owner).post(f"{URL}/{execution.pk}/cancel", {}, format="json")
    assert (again.status_code, again.json()["error"]) == (409, "not_cancellable")
