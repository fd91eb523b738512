"""Side-effect-free steps are claimed, run and recorded in one transaction; others in three."""
from __future__ import annotations

import pytest

from controlplane.executions.models import EventType, ExecutionStatus, StepRun, StepStatus
from controlplane.executions.services import step_execute
from controlplane.executions.services.steps import runs_in_transaction
from tests.controlplane.executions.test_services import DELIVERY, start, step

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "step_type, expected",
    [("noop", True), ("log", True), ("jq", True), ("condition", True), ("fail", True),
     ("http", False), ("python", False), ("delay", False), ("landing_write", False), ("landing_read", False),
     ("no-such-type", False)],
)
def test_only_side_effect_free_types_run_inside_the_claim(step_type, expected):
    assert runs_in_transaction({"type": step_type}) is expected


def _events(execution):
    return list(execution.events.order_by("seq").values_list("seq", "type", "data"))


def test_an_in_transaction_step_writes_one_row_and_consecutive_started_completed_events(groups, project, owner):
    execution = start(project, owner, [{"id": "a", "type": "jq", "group": "ingest",
                                        "config": {"program": ".trigger.n * 2"}}], input={"n": 21})

    outcome = step(execution, "a")

    assert (outcome.action, outcome.status) == ("done", StepStatus.SUCCEEDED)
    (run,) = StepRun.objects.filter(execution=execution)
    assert (run.status, run.output, run.attempt, run.worker) == (StepStatus.SUCCEEDED, 42, 1, DELIVERY.worker)
    events = _events(execution)
    assert [t for _, t, _ in events] == [EventType.EXECUTION_STARTED, EventType.STEP_STARTED, EventType.STEP_COMPLETED]
    assert [seq for seq, _, _ in events] == [1, 2, 3]
    assert run.completed_seq == 3 and events[2][2]["output"] == 42
    execution.refresh_from_db()
    assert execution.event_seq == 3


def test_a_redelivered_in_transaction_step_does_not_run_twice(groups, project, owner):
    execution = start(project, owner, [{"id": "a", "type": "noop", "group": "ingest"}])

    first, second = step(execution, "a"), step(execution, "a")

    assert (first.status, second.status) == (StepStatus.SUCCEEDED, StepStatus.SUCCEEDED)
    assert StepRun.objects.filter(execution=execution).count() == 1
    assert execution.events.filter(type=EventType.STEP_COMPLETED).count() == 1


def test_a_failing_in_transaction_step_with_attempts_left_records_the_attempt_and_retries(groups, project, owner):
    execution = start(project, owner, [{"id": "a", "type": "fail", "group": "ingest", "config": {"fail_attempts": 1},
                                        "retry": {"max_attempts": 2, "initial_delay_s": 0.01}}])

    first = step(execution, "a")
    second = step(execution, "a")

    assert first.action == "retry" and (second.action, second.status) == ("done", StepStatus.SUCCEEDED)
    assert list(StepRun.objects.filter(execution=execution).order_by("attempt").values_list("attempt", "status")) == [
        (1, StepStatus.FAILED), (2, StepStatus.SUCCEEDED)]
    types = [t for _, t, _ in _events(execution)]
    assert types == [EventType.EXECUTION_STARTED, EventType.STEP_STARTED, EventType.STEP_RETRYING,
                     EventType.STEP_STARTED, EventType.STEP_COMPLETED]


def test_the_canvas_last_task_finishes_the_run_itself(groups, project, owner):
    execution = start(project, owner, [{"id": "a", "type": "noop", "group": "ingest"},
                                       {"id": "b", "type": "noop", "group": "ingest"}],
                      [{"from": "a", "to": "b"}])

    step(execution, "a")
    outcome = step_execute(execution_id=execution.pk, node_id="b", shard=0, shard_count=1, delivery=DELIVERY,
                           final=True)

    execution.refresh_from_db()
    assert (outcome.status, execution.status) == (ExecutionStatus.SUCCEEDED, ExecutionStatus.SUCCEEDED)
    assert execution.events.filter(type=EventType.EXECUTION_SUCCEEDED).count() == 1


def test_a_last_task_that_finds_a_node_pending_hands_over_to_the_finish_task(
    groups, project, owner, django_capture_on_commit_callbacks
):
    execution = start(project, owner, [{"id": "a", "type": "noop", "group": "ingest"},
                                       {"id": "b", "type": "noop", "group": "ingest"}])

    with django_capture_on_commit_callbacks() as callbacks:
        outcome = step_execute(execution_id=execution.pk, node_id="b", shard=0, shard_count=1, delivery=DELIVERY,
                               final=True)

    execution.refresh_from_db()
    assert outcome.status == StepStatus.SUCCEEDED and execution.status == ExecutionStatus.RUNNING
    assert len(callbacks) == 1  # the stand-alone finish, which waits for `a`


def test_the_event_store_refuses_bulk_rewrites(groups, project, owner):
    from controlplane.executions.models import AppendOnly, ExecutionEvent

    execution = start(project, owner, [{"id": "a", "type": "noop", "group": "ingest"}])

    with pytest.raises(AppendOnly):
        ExecutionEvent.objects.filter(execution=execution).update(type="step.completed")
    with pytest.raises(AppendOnly):
        ExecutionEvent.objects.filter(execution=execution).delete()
    assert AppendOnly("x").to_dict()["error"] == "append_only"
    assert execution.events.count() == 1
