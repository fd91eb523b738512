"""The step path's fixed SQL reads and its one-statement writes agree with the ORM, field by field."""
from __future__ import annotations

import uuid

import pytest
from django.db import transaction

from controlplane.executions.models import EventType, Execution, ExecutionStatus, StepRun, StepStatus
from controlplane.executions.services.events import event_append, events_append_with_run
from controlplane.executions.services.rows import RUN_COLUMNS, execution_locked_row, run_progress, step_run_rows
from tests.controlplane.executions.test_services import start, step

pytestmark = pytest.mark.django_db


def _two_steps(project, owner):
    execution = start(project, owner, [{"id": "a", "type": "jq", "group": "ingest", "config": {"program": "{x: [1, 2]}"}},
                                       {"id": "b", "type": "noop", "group": "ingest"}],
                      [{"from": "a", "to": "b"}], input={"order": {"id": 7, "tags": ["x"]}})
    step(execution, "a")
    step(execution, "b")
    return execution


@pytest.mark.parametrize("with_graph", [True, False])
def test_the_locked_row_holds_the_values_the_orm_reads(groups, project, owner, with_graph):
    execution = _two_steps(project, owner)
    expected = Execution.objects.get(pk=execution.pk)

    with transaction.atomic():
        locked = execution_locked_row(str(execution.pk), with_graph=with_graph)

    for field in Execution._meta.concrete_fields:
        if field.name == "canvas" or (field.name == "graph" and not with_graph):
            assert field.attname in locked.get_deferred_fields()
        else:
            assert getattr(locked, field.attname) == getattr(expected, field.attname), field.name
    assert isinstance(locked.pk, uuid.UUID) and locked.input == {"order": {"id": 7, "tags": ["x"]}}
    assert locked.graph == expected.graph  # a deferred field still loads when touched


def test_a_missing_execution_is_does_not_exist(db):
    with transaction.atomic(), pytest.raises(Execution.DoesNotExist):
        execution_locked_row(uuid.uuid4(), with_graph=True)


def test_step_run_rows_match_values_list_in_order_and_narrow_to_nodes(groups, project, owner):
    execution = _two_steps(project, owner)
    runs = StepRun.objects.filter(execution=execution).order_by("id")

    assert step_run_rows(execution.pk, with_output=True) == [list(r) for r in runs.values_list(*RUN_COLUMNS, "output")]
    assert step_run_rows(execution.pk, with_output=False, node_ids=["b"]) == [
        list(r) for r in runs.filter(node_id="b").values_list(*RUN_COLUMNS)]
    assert step_run_rows(execution.pk, with_output=False, node_ids=[]) == []


def test_run_progress_reads_status_sequence_and_attempts_together(groups, project, owner):
    execution = _two_steps(project, owner)
    stored = Execution.objects.get(pk=execution.pk)

    status, event_seq, rows = run_progress(execution.pk, with_output=True, node_ids=None)

    assert (status, event_seq) == (stored.status, stored.event_seq)
    assert rows == step_run_rows(execution.pk, with_output=True)
    assert run_progress(execution.pk, with_output=False, node_ids=["b"])[2] == step_run_rows(
        execution.pk, with_output=False, node_ids=["b"])
    assert run_progress(execution.pk, with_output=False, node_ids=["nothing-ran"])[2] == []
    assert run_progress(uuid.uuid4(), with_output=False, node_ids=None) is None


def test_an_event_saves_the_named_execution_fields_with_it(groups, project, owner):
    execution = start(project, owner, [{"id": "a", "type": "noop", "group": "ingest"}])

    with transaction.atomic():
        execution.status, execution.error = ExecutionStatus.COMPENSATING, {"message": "boom"}
        event = event_append(execution=execution, type=EventType.EXECUTION_FAILED, data={"error": "boom"},
                             update_fields=["status", "error"])

    stored = Execution.objects.get(pk=execution.pk)
    assert (stored.status, stored.error, stored.event_seq) == (ExecutionStatus.COMPENSATING, {"message": "boom"}, 2)
    assert event.seq == 2 and stored.events.get(seq=2).type == EventType.EXECUTION_FAILED


def test_an_attempt_and_its_events_are_written_together_with_the_completion_seq(groups, project, owner):
    execution = start(project, owner, [{"id": "a", "type": "noop", "group": "ingest"}])
    run = StepRun(execution=execution, node_id="a", group="ingest", queue="q", status=StepStatus.SUCCEEDED,
                  output={"ok": [1]}, request={})

    with transaction.atomic():
        appended = events_append_with_run(execution=execution, run=run, completed=True,
                                          events=[(EventType.STEP_STARTED, {"node_id": "a"}),
                                                  (EventType.STEP_COMPLETED, {"node_id": "a", "output": {"ok": [1]}})])

    stored = StepRun.objects.get(pk=run.pk)
    assert (stored.status, stored.output, stored.completed_seq) == (StepStatus.SUCCEEDED, {"ok": [1]}, 3)
    assert [e.seq for e in appended] == [2, 3] and run.completed_seq == 3 and not run._state.adding
    assert list(execution.events.order_by("seq").values_list("seq", "type")) == [
        (1, EventType.EXECUTION_STARTED), (2, EventType.STEP_STARTED), (3, EventType.STEP_COMPLETED)]


def test_a_start_writes_the_run_and_its_first_event_together(groups, project, owner):
    execution = start(project, owner, [{"id": "a", "type": "noop", "group": "ingest"}], input={"k": [1]})

    stored = Execution.objects.get(pk=execution.pk)
    assert (stored.event_seq, stored.status, stored.input) == (1, ExecutionStatus.RUNNING, {"k": [1]})
    assert stored.created_at is not None and stored.graph == execution.graph and stored.canvas == execution.canvas
    assert list(stored.events.values_list("seq", "type")) == [(1, EventType.EXECUTION_STARTED)]
    assert not execution._state.adding
