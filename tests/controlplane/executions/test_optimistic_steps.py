"""Side-effect-free steps recorded without the execution lock: two statements, written only if the
run did not change since they read it; anything else goes the locked way."""
from __future__ import annotations

import dataclasses

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


# A retry (or any delivery after the first) takes the read-then-write path; a first delivery of
# a step that reads no upstream output is claimed and recorded in one statement.
RETRY = dataclasses.replace(DELIVERY, retries=1)


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


def test_a_first_try_is_claimed_and_recorded_in_one_statement_without_a_lock(groups, project, owner):
    execution = _a_then_b(project, owner)
    step(execution, "a")

    outcome, sql = _statements(lambda: step(execution, "b"))

    assert (outcome.action, outcome.status) == ("done", StepStatus.SUCCEEDED)
    assert len(sql) == 1 and "FOR UPDATE" not in sql[0]
    run = StepRun.objects.get(execution=execution, node_id="b")
    assert (run.status, run.attempt, run.worker, run.completed_seq) == (StepStatus.SUCCEEDED, 1, DELIVERY.worker, 5)
    assert _events(execution)[-2:] == [(4, EventType.STEP_STARTED), (5, EventType.STEP_COMPLETED)]


def test_a_first_try_whose_predecessor_is_pending_writes_nothing_and_waits(groups, project, owner):
    execution = _a_then_b(project, owner)

    outcome = step(execution, "b")

    assert outcome.action == "wait"
    assert not StepRun.objects.filter(execution=execution, node_id="b").exists()
    assert Execution.objects.get(pk=execution.pk).event_seq == 1


def test_a_first_try_of_a_recorded_step_is_refused_by_the_unique_attempt_and_reports_it(groups, project, owner):
    execution = _a_then_b(project, owner)
    step(execution, "a")
    step(execution, "b")

    outcome = step(execution, "b")  # a duplicate delivery of the first try

    assert (outcome.action, outcome.status) == ("done", StepStatus.SUCCEEDED)
    assert StepRun.objects.filter(execution=execution, node_id="b").count() == 1
    assert [t for _, t in _events(execution)].count(EventType.STEP_COMPLETED) == 2


def test_a_later_try_is_read_and_recorded_in_two_statements_without_a_lock(groups, project, owner):
    execution = _a_then_b(project, owner)
    step(execution, "a")

    outcome, sql = _statements(lambda: step(execution, "b", delivery=RETRY))

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

    assert (len(first), len(second)) == (2, 1)
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

    outcome = step(execution, "b", delivery=RETRY)

    assert (outcome.action, outcome.status) == ("done", StepStatus.SUCCEEDED)  # the locked path found it recorded
    assert list(StepRun.objects.filter(execution=execution, node_id="b").values_list("attempt", "status")) == [
        (1, StepStatus.SUCCEEDED)]
    assert [t for _, t in _events(execution)].count(EventType.STEP_COMPLETED) == 2  # a's and b's, once each


def test_a_sibling_recorded_between_read_and_write_does_not_send_the_step_the_locked_way(
    groups, project, owner, monkeypatch
):
    """Two branches after `a`: `c` records while `b` runs. `b` decided on `a` and its own shard,
    neither of which moved, so its write still applies in its one statement (no lock)."""
    execution = start(project, owner, [{"id": "a", "type": "noop", "group": "ingest"},
                                       {"id": "b", "type": "noop", "group": "ingest"},
                                       {"id": "c", "type": "noop", "group": "ingest"}],
                      [{"from": "a", "to": "b"}, {"from": "a", "to": "c"}])
    step(execution, "a")
    _changing_between_read_and_write(monkeypatch, lambda: step(execution, "c"))

    outcome, sql = _statements(lambda: step(execution, "b", delivery=RETRY))

    assert (outcome.action, outcome.status) == ("done", StepStatus.SUCCEEDED)
    assert not any("FOR UPDATE" in query for query in sql), "the unlocked write applied"
    assert set(StepRun.objects.filter(execution=execution).values_list("node_id", "attempt", "status")) == {
        ("a", 1, StepStatus.SUCCEEDED), ("b", 1, StepStatus.SUCCEEDED), ("c", 1, StepStatus.SUCCEEDED)}
    events = _events(execution)
    assert [seq for seq, _ in events] == list(range(1, len(events) + 1))  # dense, c's then b's
    assert [t for _, t in events][-2:] == [EventType.STEP_STARTED, EventType.STEP_COMPLETED]


def test_a_run_cancelled_between_read_and_write_records_nothing(groups, project, owner, monkeypatch):
    execution = _a_then_b(project, owner)
    step(execution, "a")

    def cancel():
        with transaction.atomic():
            locked = locked_execution(execution.pk)
            locked.status = ExecutionStatus.CANCELLED
            event_append(execution=locked, type=EventType.EXECUTION_CANCELLED, data={}, update_fields=["status"])

    _changing_between_read_and_write(monkeypatch, cancel)

    outcome = step(execution, "b", delivery=RETRY)

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


def test_a_first_try_of_a_run_cancelled_while_its_step_ran_records_nothing(groups, project, owner, monkeypatch):
    execution = _a_then_b(project, owner)
    step(execution, "a")
    body = optimistic.run_attempt

    def run_then_cancel(*args, **kwargs):
        result = body(*args, **kwargs)
        monkeypatch.setattr(optimistic, "run_attempt", body)
        with transaction.atomic():
            locked = locked_execution(execution.pk)
            locked.status = ExecutionStatus.CANCELLED
            event_append(execution=locked, type=EventType.EXECUTION_CANCELLED, data={}, update_fields=["status"])
        return result

    monkeypatch.setattr(optimistic, "run_attempt", run_then_cancel)

    outcome = step(execution, "b")

    assert (outcome.action, outcome.status) == ("ignore", ExecutionStatus.CANCELLED)
    assert not StepRun.objects.filter(execution=execution, node_id="b").exists()
    assert _events(execution)[-1] == (4, EventType.EXECUTION_CANCELLED)
