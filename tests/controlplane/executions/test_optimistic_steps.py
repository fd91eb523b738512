"""Side-effect-free steps recorded without the execution lock: two statements, written only if the
run did not change since they read it; anything else goes the locked way."""
from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from controlplane.executions.models import EventType, Execution, ExecutionStatus, StepRun, StepStatus
from controlplane.executions.services import event_append, locked_execution, step_execute
from controlplane.executions.services import optimistic, state
from tests.controlplane.executions.test_services import DELIVERY, start, step

pytestmark = pytest.mark.django_db(transaction=True)  # outside a test transaction, as in a worker


@pytest.fixture(autouse=True)
def _postgresql_only():
    if connection.vendor != "postgresql":
        pytest.skip("the unlocked path is PostgreSQL's (SQLite takes the locked one)")


def _a_then_b(project, owner, b_type="noop", **b_fields):
    return start(project, owner, [{"id": "a", "type": "noop", "group": "ingest"},
                                  {"id": "b", "type": b_type, "group": "ingest", **b_fields}],
                 [{"from": "a", "to": "b"}])


def _statements(call):
    with CaptureQueriesContext(connection) as captured:
        result = call()
    return result, [query["sql"] for query in captured.captured_queries]


def _events(execution):
    return list(Execution.objects.get(pk=execution.pk).events.order_by("seq").values_list("seq", "type"))


def test_a_step_is_read_and_recorded_in_two_statements_without_a_lock(groups, project, owner):
    execution = _a_then_b(project, owner)
    step(execution, "a")

    outcome, sql = _statements(lambda: step(execution, "b"))

    assert (outcome.action, outcome.status) == ("done", StepStatus.SUCCEEDED)
    assert len(sql) == 2 and not any("FOR UPDATE" in query for query in sql)
    run = StepRun.objects.get(execution=execution, node_id="b")
    assert (run.status, run.attempt, run.worker, run.completed_seq) == (StepStatus.SUCCEEDED, 1, DELIVERY.worker, 5)
    assert _events(execution)[-2:] == [(4, EventType.STEP_STARTED), (5, EventType.STEP_COMPLETED)]
    assert Execution.objects.get(pk=execution.pk).event_seq == 5


def test_the_canvas_last_task_also_finishes_the_run_in_the_same_statement(groups, project, owner):
    execution = _a_then_b(project, owner)
    step(execution, "a")

    outcome, sql = _statements(lambda: step_execute(execution_id=execution.pk, node_id="b", shard=0, shard_count=1,
                                                    delivery=DELIVERY, final=True))

    assert (outcome.action, outcome.status) == ("done", ExecutionStatus.SUCCEEDED) and len(sql) == 2
    stored = Execution.objects.get(pk=execution.pk)
    assert stored.status == ExecutionStatus.SUCCEEDED and stored.finished_at is not None
    assert _events(execution)[-3:] == [(4, EventType.STEP_STARTED), (5, EventType.STEP_COMPLETED),
                                       (6, EventType.EXECUTION_SUCCEEDED)]
    assert stored.events.get(seq=6).data["skipped"] == []
    assert StepRun.objects.get(execution=execution, node_id="b").completed_seq == 5  # its completion, not the end


def test_a_run_this_process_has_not_seen_is_read_once_more(groups, project, owner):
    execution = _a_then_b(project, owner)
    state._PINNED_CACHE.clear()

    _, first = _statements(lambda: step(execution, "a"))
    _, second = _statements(lambda: step(execution, "b"))

    assert (len(first), len(second)) == (3, 2)
    assert set(StepRun.objects.filter(execution=execution).values_list("node_id", "status")) == {
        ("a", StepStatus.SUCCEEDED), ("b", StepStatus.SUCCEEDED)}


def _changing_between_read_and_write(monkeypatch, change):
    """Run `change` (committed) right after the unlocked path read the run, once."""
    read = optimistic.run_progress

    def read_then_change(*args, **kwargs):
        progress = read(*args, **kwargs)
        monkeypatch.setattr(optimistic, "run_progress", read)
        change()
        return progress

    monkeypatch.setattr(optimistic, "run_progress", read_then_change)


def test_a_duplicate_recorded_between_read_and_write_wins_and_the_step_is_recorded_once(
    groups, project, owner, monkeypatch
):
    execution = _a_then_b(project, owner)
    step(execution, "a")
    _changing_between_read_and_write(monkeypatch, lambda: step(execution, "b"))

    outcome = step(execution, "b")

    assert (outcome.action, outcome.status) == ("done", StepStatus.SUCCEEDED)  # the locked path found it recorded
    assert list(StepRun.objects.filter(execution=execution, node_id="b").values_list("attempt", "status")) == [
        (1, StepStatus.SUCCEEDED)]
    assert [t for _, t in _events(execution)].count(EventType.STEP_COMPLETED) == 2  # a's and b's, once each


def test_a_run_cancelled_between_read_and_write_records_nothing(groups, project, owner, monkeypatch):
    execution = _a_then_b(project, owner)
    step(execution, "a")

    def cancel():
        with transaction.atomic():
            locked = locked_execution(execution.pk)
            locked.status = ExecutionStatus.CANCELLED
            event_append(execution=locked, type=EventType.EXECUTION_CANCELLED, data={}, update_fields=["status"])

    _changing_between_read_and_write(monkeypatch, cancel)

    outcome = step(execution, "b")

    assert (outcome.action, outcome.status) == ("ignore", ExecutionStatus.CANCELLED)
    assert not StepRun.objects.filter(execution=execution, node_id="b").exists()
    assert _events(execution)[-1] == (4, EventType.EXECUTION_CANCELLED)


def test_a_failing_step_is_recorded_the_locked_way(groups, project, owner):
    execution = _a_then_b(project, owner, "fail", config={"fail_attempts": 1},
                          retry={"max_attempts": 2, "initial_delay_s": 0.01})
    step(execution, "a")

    outcome, sql = _statements(lambda: step(execution, "b"))

    assert outcome.action == "retry" and any("FOR UPDATE" in query for query in sql)
    assert list(StepRun.objects.filter(execution=execution, node_id="b").values_list("attempt", "status")) == [
        (1, StepStatus.FAILED)]
    assert [t for _, t in _events(execution)][-2:] == [EventType.STEP_STARTED, EventType.STEP_RETRYING]
