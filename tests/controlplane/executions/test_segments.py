"""Segments without workers: a gated run is published one segment at a time, waits at a held
gate holding nothing, resumes once when the gate is resolved, and finishes after its last one."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from controlplane.executions.models import EventType, Execution, ExecutionStatus, StepRun, StepStatus
from controlplane.executions.services import Delivery, execution_start, executions_redrive_stalled, step_execute
from controlplane.executions.services import segments as segment_services
from controlplane.executions.selectors import execution_timeline
from controlplane.executions.services.segments import GateOpen, gate_resolved, register_gate
from controlplane.executions.store import locked_execution, store_write
from pipelines.canvas import StepTask
from tests.controlplane.executions.builders import edges, job, make_deployment

pytestmark = pytest.mark.django_db

DELIVERY = Delivery(task_id="t-1", worker="ingest1@unit", queue="wg.acme.ingest",
                    request={"id": "t-1", "task": "flowplane.step"})
GATE = {"approvers": {"roles": ["owner"]}}


@pytest.fixture
def gate_answers():
    """The test's own handler for approval gates: answers what the test put in the dict (held by
    default), and records each call."""
    answers: dict = {"calls": []}
    previous = segment_services._HANDLERS.get("approval")

    def handler(execution, job, snapshot):
        answers["calls"].append(job["id"])
        return answers.get(job["id"], GateOpen("held"))

    register_gate("approval", handler)
    yield answers
    if previous is not None:
        register_gate("approval", previous)


@pytest.fixture
def published(monkeypatch):
    """The canvases the services publish (after commit), instead of a broker."""
    canvases: list = []

    class Published:
        def __init__(self, canvas):
            self.canvas = canvas

        def apply_async(self):
            canvases.append(self.canvas)

    monkeypatch.setattr("controlplane.executions.dispatch.build_signature",
                        lambda execution_id, canvas, queues: Published(canvas))
    # The stand-in is no canvas: publish it without recording task ids (`dispatch.publish`).
    monkeypatch.setattr("controlplane.executions.dispatch.publish", lambda execution_id, signature: signature.apply_async())
    return canvases


def start(project, owner, nodes, edge_list, capture):
    deployment = make_deployment(project, nodes, edge_list, user=owner)
    with capture(execute=True):
        execution, _ = execution_start(deployment=deployment, input={}, user=owner)
    return execution


def step(execution, node_id, capture, final=False):
    with capture(execute=True):
        return step_execute(execution_id=execution.pk, node_id=node_id, shard=0, shard_count=1, delivery=DELIVERY,
                            final=final)


def record_gate(execution, node_id, output):
    """What a decision does: the gate's node recorded succeeded with its output."""
    with transaction.atomic():
        locked = locked_execution(execution.pk)
        now = timezone.now()
        run = StepRun(execution=locked, node_id=node_id, group="ingest", queue="", status=StepStatus.SUCCEEDED,
                      started_at=now, finished_at=now, output=output)
        store_write(execution=locked, insert=run, completes=run, events=[
            (EventType.STEP_STARTED, {"node_id": node_id, "shard": 0, "attempt": 1}),
            (EventType.STEP_COMPLETED, {"node_id": node_id, "shard": 0, "attempt": 1, "output": output})])


def resolve(execution, node_id, capture):
    with capture(execute=True):
        return gate_resolved(execution.pk, node_id, by="test")


def types(execution):
    return list(execution.events.order_by("seq").values_list("type", flat=True))


def refreshed(execution) -> Execution:
    return Execution.objects.get(pk=execution.pk)


def test_a_graph_without_gates_compiles_as_before(groups, project, owner, django_capture_on_commit_callbacks,
                                                   published):
    execution = start(project, owner, [job("a"), job("b")], edges(("a", "b")), django_capture_on_commit_callbacks)
    assert "segments" not in execution.canvas
    assert published == [execution.canvas]


def test_the_run_waits_at_a_held_gate_and_resumes_once_when_it_is_resolved(
        groups, project, owner, django_capture_on_commit_callbacks, gate_answers, published):
    execution = start(project, owner, [job("a"), job("ok", "approval", config=GATE), job("b")],
                      edges(("a", "ok"), ("ok", "b")), django_capture_on_commit_callbacks)

    segments = execution.canvas["segments"]
    assert [(s["index"], s["gates"], s["nodes"]) for s in segments] == [(0, [], ["a"]), (1, ["ok"], ["b"])]
    assert execution.canvas["root"] == segments[0]["plan"]["root"]
    assert [task for task in published] == [execution.canvas]

    step(execution, "a", django_capture_on_commit_callbacks, final=True)
    assert refreshed(execution).status == ExecutionStatus.WAITING
    assert gate_answers["calls"] == ["ok"] and len(published) == 1  # nothing queued while waiting
    assert types(execution)[-1] == EventType.EXECUTION_WAITING

    record_gate(execution, "ok", {"go": True})
    resolve(execution, "ok", django_capture_on_commit_callbacks)
    resolve(execution, "ok", django_capture_on_commit_callbacks)  # a duplicate publishes nothing

    assert refreshed(execution).status == ExecutionStatus.RUNNING
    assert len(published) == 2 and published[1]["root"] == StepTask("b", 0, 1, "ingest").to_dict()
    dispatched = execution.events.filter(type=EventType.SEGMENT_DISPATCHED)
    assert [e.data["index"] for e in dispatched] == [1]
    step(execution, "b", django_capture_on_commit_callbacks, final=True)
    assert refreshed(execution).status == ExecutionStatus.SUCCEEDED
    timeline = execution_timeline(execution=refreshed(execution))
    assert [(s["index"], s["gates"], s["nodes"], s["dispatched_at"] is not None) for s in timeline["segments"]] == [
        (0, [], ["a"], True), (1, ["ok"], ["b"], True)]


def test_a_gate_first_publishes_nothing_until_it_opens(groups, project, owner, django_capture_on_commit_callbacks,
                                                       gate_answers, published):
    execution = start(project, owner, [job("ok", "approval", config=GATE), job("a")], edges(("ok", "a")),
                      django_capture_on_commit_callbacks)
    assert execution.canvas["segments"][0]["plan"] is None
    assert refreshed(execution).status == ExecutionStatus.WAITING and published == []

    record_gate(execution, "ok", {})
    resolve(execution, "ok", django_capture_on_commit_callbacks)
    assert [c["root"]["node"] for c in published] == ["a"]


def test_a_gate_last_and_two_in_a_row_finish_the_run_once_resolved(
        groups, project, owner, django_capture_on_commit_callbacks, gate_answers, published):
    execution = start(project, owner, [job("a"), job("g1", "approval", config=GATE), job("g2", "approval", config=GATE)],
                      edges(("a", "g1"), ("g1", "g2")), django_capture_on_commit_callbacks)
    step(execution, "a", django_capture_on_commit_callbacks, final=True)
    assert gate_answers["calls"] == ["g1"]

    record_gate(execution, "g1", {})
    resolve(execution, "g1", django_capture_on_commit_callbacks)
    assert refreshed(execution).status == ExecutionStatus.WAITING and gate_answers["calls"] == ["g1", "g2"]

    record_gate(execution, "g2", {})
    resolve(execution, "g2", django_capture_on_commit_callbacks)
    assert refreshed(execution).status == ExecutionStatus.SUCCEEDED
    assert len(published) == 1  # only segment 0 ever had tasks


def test_a_run_gate_publishes_its_plan_item_before_the_segment(
        groups, project, owner, django_capture_on_commit_callbacks, gate_answers, published):
    gate_answers["ok"] = GateOpen("run", StepTask("x", 0, 1, "ingest"))
    execution = start(project, owner, [job("a"), job("ok", "approval", config=GATE), job("b"), job("c")],
                      edges(("a", "ok"), ("ok", "b"), ("b", "c")), django_capture_on_commit_callbacks)
    step(execution, "a", django_capture_on_commit_callbacks, final=True)

    assert refreshed(execution).status == ExecutionStatus.RUNNING
    chained = published[1]["root"]
    assert chained["kind"] == "chain" and [item.get("node") or item.get("nodes") for item in chained["items"]] == [
        "x", ["b", "c"]]


def test_the_watchdog_leaves_a_waiting_run_alone_and_redrives_only_the_current_segment(
        groups, project, owner, django_capture_on_commit_callbacks, gate_answers, published, settings):
    settings.EXECUTION_STALL_AFTER_S = 60
    execution = start(project, owner, [job("a"), job("ok", "approval", config=GATE), job("b")],
                      edges(("a", "ok"), ("ok", "b")), django_capture_on_commit_callbacks)
    step(execution, "a", django_capture_on_commit_callbacks, final=True)
    later = timezone.now() + timedelta(hours=5)
    with django_capture_on_commit_callbacks(execute=True):
        assert executions_redrive_stalled(now=later) == {"redriven": 0, "failed": 0}
    assert len(published) == 1

    record_gate(execution, "ok", {})
    resolve(execution, "ok", django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        assert executions_redrive_stalled(now=later) == {"redriven": 1, "failed": 0}
    assert [c["root"] for c in published[1:]] == [StepTask("b", 0, 1, "ingest").to_dict()] * 2
    assert execution.events.filter(type=EventType.SEGMENT_DISPATCHED).count() == 1


def test_a_gate_on_an_untaken_branch_is_skipped_without_asking_its_handler(
        groups, project, owner, django_capture_on_commit_callbacks, gate_answers, published):
    deployment = make_deployment(project, [
        job("check", "condition", config={"expression": ".trigger.go"}),
        job("ok", "approval", config=GATE), job("after", "noop"), job("other", "noop"),
    ], edges(("check", "ok", "true"), ("ok", "after"), ("check", "other", "false")), user=owner)
    with django_capture_on_commit_callbacks(execute=True):
        execution, _ = execution_start(deployment=deployment, input={"go": False}, user=owner)
    step(execution, "check", django_capture_on_commit_callbacks)
    step(execution, "other", django_capture_on_commit_callbacks, final=True)

    assert gate_answers["calls"] == []
    assert published[1]["root"]["node"] == "after"  # skipped by its dead edge when it runs
    step(execution, "after", django_capture_on_commit_callbacks, final=True)
    assert refreshed(execution).status == ExecutionStatus.SUCCEEDED
    statuses = dict(StepRun.objects.filter(execution=execution).values_list("node_id", "status"))
    assert statuses == {"check": "succeeded", "ok": "skipped", "after": "skipped", "other": "succeeded"}


def test_a_segments_last_task_fired_early_leaves_the_advance_to_the_stand_alone_finish(
        groups, project, owner, django_capture_on_commit_callbacks, gate_answers, published, monkeypatch):
    from controlplane.executions.services import barrier_execute, execution_finish

    finishes = []
    monkeypatch.setattr("controlplane.executions.dispatch.finish_signature", lambda execution_id, queue: type(
        "F", (), {"apply_async": lambda self: finishes.append(execution_id)})())
    execution = start(project, owner, [job("a"), job("b"), job("ok", "approval", config=GATE), job("c")],
                      edges(("a", "ok"), ("b", "ok"), ("ok", "c")), django_capture_on_commit_callbacks)
    step(execution, "a", django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):  # a chord body fired twice: b not recorded yet
        barrier_execute(execution_id=execution.pk, label="end", delivery=DELIVERY, final=True)
    assert finishes == [str(execution.pk)] and gate_answers["calls"] == []

    waited = execution_finish(execution_id=execution.pk, delivery=DELIVERY)
    assert waited.action == "wait" and "['b']" in waited.detail
    step(execution, "b", django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        execution_finish(execution_id=execution.pk, delivery=DELIVERY)
    assert refreshed(execution).status == ExecutionStatus.WAITING and gate_answers["calls"] == ["ok"]
