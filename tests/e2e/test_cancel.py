"""End-to-end cancel: a cancelled run starts no step afterwards and leaves no task in the broker or
on a worker; interruptible steps are terminated; compensate undoes exactly the completed steps; a
retry waiting for its countdown is revoked. Real workers, bounded waits, no timed asserts."""
from __future__ import annotations

import base64
import json
import os

import pytest
import redis
from django.conf import settings
from django.db.models import Max

from controlplane.core.celery_app import app
from controlplane.executions.models import EventType, Execution, ExecutionStatus, StepRun, StepStatus
from controlplane.executions.services import execution_start
from controlplane.executions.task_ids import run_task_ids
from controlplane.tenancy.models import Role
from tests.controlplane.executions.builders import edges, job, make_deployment, make_group
from tests.e2e.engine_support import WORKER_ENV, wait_for_end, wait_live
from tests.e2e.harness import wait_until
from tests.factories import add_member

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

URL = "/api/v1/executions"
HOSTS = ("cancel1@e2e", "cancel2@e2e")


@pytest.fixture
def group(start_worker, company, landing_dir):
    """Group `ingest` of acme served by two workers of two processes each."""
    group = make_group(company, "ingest")
    env = {**WORKER_ENV, "LANDING_STORE_URL": f"file://{landing_dir}"}
    workers = [start_worker([group.queue_name], host, concurrency=2, extra_env=env, wait=False) for host in HOSTS]
    for worker in workers:
        worker.wait_ready()
    wait_live(group)
    group.processes = workers
    return group


def _running(execution, node_id=None):
    runs = StepRun.objects.filter(execution=execution, status=StepStatus.RUNNING, is_compensation=False)
    return runs.filter(node_id=node_id) if node_id else runs


def _cancel(client, execution, **body):
    response = client.post(f"{URL}/{execution.pk}/cancel", body, format="json")
    assert response.status_code == 200, response.json()
    return response.json()


def _left_anywhere(execution, queue: str) -> set[str]:
    """The run's task ids still in its queue in Redis, prefetched (reserved) or scheduled (a
    countdown or ETA) on any worker."""
    tracked = run_task_ids(execution.pk)
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    left = set()
    for raw in client.lrange(queue, 0, -1):
        message = json.loads(raw)
        left.add(message["headers"]["id"])
    inspect = app.control.inspect(destination=list(HOSTS), timeout=2)
    for requests in (inspect.reserved() or {}).values():
        left |= {request["id"] for request in requests}
    for entries in (inspect.scheduled() or {}).values():
        left |= {entry["request"]["id"] for entry in entries}
    return left & tracked


def test_cancel_of_a_wide_fan_out_stops_every_step_and_leaves_no_task(group, project, owner, outsider, company,
                                                                        client_for):
    deployment = make_deployment(project, [
        job("prepare"),
        job("fan", "delay", config={"seconds": 2}, replicas=50),
        job("publish"),
    ], edges(("prepare", "fan"), ("fan", "publish")), user=owner)
    execution, _ = execution_start(deployment=deployment, input={}, user=owner)
    wait_until(lambda: _running(execution, "fan").exists(), timeout=60, what="the first shards of the fan-out to start")

    # Neither another tenant nor a viewer can stop it.
    assert client_for(outsider).post(f"{URL}/{execution.pk}/cancel", {}, format="json").status_code == 404
    viewer = add_member(company, role=Role.VIEWER)
    assert client_for(viewer).post(f"{URL}/{execution.pk}/cancel", {}, format="json").status_code == 403
    assert Execution.objects.get(pk=execution.pk).status == ExecutionStatus.RUNNING

    body = _cancel(client_for(owner), execution, reason="wrong input")

    assert body["status"] == ExecutionStatus.CANCELLED
    cancelled = Execution.objects.get(pk=execution.pk)
    seq_at_cancel = cancelled.event_seq
    last_attempt_at_cancel = StepRun.objects.filter(execution=execution).aggregate(last=Max("id"))["last"]
    record = cancelled.events.get(type=EventType.EXECUTION_CANCELLED).data
    finishing = {StepRun.objects.get(execution=execution, is_compensation=False, node_id=item["node_id"],
                                     shard=item["shard"], attempt=item["attempt"]).pk
                 for item in record["finishing"]}
    assert finishing and not record["interrupted"]
    assert client_for(owner).post(f"{URL}/{execution.pk}/cancel", {}, format="json").json()["error"] == \
        "not_cancellable"

    # The steps running at the cancel finish their 2 s attempt; nothing else of the run is left.
    wait_until(lambda: not _running(execution).exists(), timeout=60, what="the running shards to finish")
    wait_until(lambda: not _left_anywhere(execution, group.queue_name), timeout=60,
               what="the run's queued and prefetched tasks to be dropped")

    assert not StepRun.objects.filter(execution=execution, id__gt=last_attempt_at_cancel).exists()
    later = cancelled.events.filter(seq__gt=seq_at_cancel)
    assert not later.filter(type=EventType.STEP_STARTED).exists()
    assert set(later.values_list("type", flat=True)) <= {EventType.STEP_COMPLETED}
    assert StepRun.objects.filter(id__in=finishing, status=StepStatus.SUCCEEDED).count() == len(finishing)
    final = Execution.objects.get(pk=execution.pk)
    assert final.status == ExecutionStatus.CANCELLED and final.finished_at is not None
    # Every shard that did not complete before the cancel has its step.cancelled event.
    events = cancelled.events.filter(type=EventType.STEP_CANCELLED)
    states = [(e.data["node_id"], e.data["state"]) for e in events]
    fan_done = StepRun.objects.filter(execution=execution, node_id="fan", id__lte=last_attempt_at_cancel).exclude(
        id__in=finishing).count()
    assert states.count(("fan", "finishing")) == len(finishing)
    assert states.count(("fan", "pending")) == 50 - len(finishing) - fan_done
    assert ("publish", "pending") in states and not any(node == "prepare" for node, _ in states)
    assert (record["by"], record["reason"], record["compensate"]) == ("owner", "wrong input", False)
    # Tracking covered every task that ran.
    tracked = run_task_ids(execution.pk)
    assert set(StepRun.objects.filter(execution=execution).values_list("task_id", flat=True)) <= tracked
    revoked = sum(worker.log_text().count("Discarding revoked task") for worker in group.processes)
    assert revoked > 0


def test_an_interruptible_step_is_terminated_and_compensate_undoes_only_completed_steps(group, project, owner,
                                                                                        client_for):
    undo = {"type": "noop"}
    deployment = make_deployment(project, [
        job("book", "delay", config={"seconds": 0}, compensate=undo),
        job("long", "delay", config={"seconds": 120}, interruptible=True, compensate=undo),
        job("short", "delay", config={"seconds": 3}, compensate=undo),
        job("never", "delay", config={"seconds": 0}, compensate=undo),
    ], edges(("book", "long"), ("book", "short"), ("long", "never"), ("short", "never")), user=owner)
    execution, _ = execution_start(deployment=deployment, input={}, user=owner)
    wait_until(lambda: _running(execution, "long").exists() and _running(execution, "short").exists(), timeout=60,
               what="long and short to be running")
    long_run = _running(execution, "long").get()

    body = _cancel(client_for(owner), execution, compensate=True)

    assert body["status"] == ExecutionStatus.COMPENSATING
    long_run.refresh_from_db()
    assert long_run.status == StepStatus.CANCELLED and long_run.error["details"]["reason"] == "cancelled"

    def process_gone():
        try:
            os.kill(long_run.pid, 0)
        except ProcessLookupError:
            return True
        return False

    wait_until(process_gone, timeout=30, what="the interrupted step's pool process to be terminated")
    final = wait_for_end(execution, timeout=90)

    assert final.status == ExecutionStatus.CANCELLED
    steps = dict(StepRun.objects.filter(execution=execution, is_compensation=False).values_list("node_id", "status"))
    assert steps == {"book": StepStatus.COMPENSATED, "short": StepStatus.COMPENSATED, "long": StepStatus.CANCELLED}
    undone = final.events.get(type=EventType.SAGA_COMPENSATED).data["compensated"]
    assert [item["node_id"] for item in undone] == ["short", "book"]  # latest completion first
    long_run.refresh_from_db()
    assert long_run.status == StepStatus.CANCELLED  # what it reported after the SIGTERM, if anything, was dropped
    states = {e.data["node_id"]: e.data["state"] for e in final.events.filter(type=EventType.STEP_CANCELLED)}
    assert states == {"long": "interrupted", "short": "finishing", "never": "pending"}


def test_a_step_waiting_for_its_retry_countdown_is_revoked(group, project, owner, client_for):
    deployment = make_deployment(project, [
        job("flaky", "fail", config={"retryable": True},
            retry={"max_attempts": 3, "initial_delay_s": 4, "max_delay_s": 4, "jitter": False}),
    ], user=owner)
    execution, _ = execution_start(deployment=deployment, input={}, user=owner)
    wait_until(lambda: execution.events.filter(type=EventType.STEP_RETRYING).exists(), timeout=60,
               what="the first attempt to fail and schedule its retry")
    inspect = app.control.inspect(destination=list(HOSTS), timeout=2)

    def scheduled_ids():
        return {entry["request"]["id"] for entries in (inspect.scheduled() or {}).values() for entry in entries}

    retry_id = StepRun.objects.get(execution=execution, attempt=1).task_id
    wait_until(lambda: retry_id in scheduled_ids(), timeout=30, what="the retry to wait on a worker's timer")

    _cancel(client_for(owner), execution)

    # Its countdown comes, the worker drops it as revoked: no second attempt.
    wait_until(lambda: retry_id not in scheduled_ids(), timeout=30, what="the revoked retry to leave the timer")
    wait_until(lambda: any(f"Discarding revoked task: flowplane.step[{retry_id}]" in worker.log_text()
                           for worker in group.processes), timeout=30, what="a worker to discard the revoked retry")
    assert list(StepRun.objects.filter(execution=execution).values_list("attempt", "status")) == [(1, "failed")]
    assert not _left_anywhere(execution, group.queue_name)
    states = [e.data["state"] for e in execution.events.filter(type=EventType.STEP_CANCELLED)]
    assert states == ["retrying"]


def test_cancel_of_a_running_map_stops_its_items(group, project, owner, client_for):
    deployment = make_deployment(project, [
        job("discover", "jq", config={"program": "[range(20)]"}),
        job("each", "map", config={"items": "{{ .steps.discover.output }}", "max_parallel": 3,
                                   "step": {"type": "delay", "config": {"seconds": 2}}}),
        job("after", "jq", config={"program": ".steps.each.output"}),
    ], edges(("discover", "each"), ("each", "after")), user=owner)
    execution, _ = execution_start(deployment=deployment, input={}, user=owner)
    wait_until(lambda: _running(execution, "each").exists(), timeout=60, what="the first items to start")

    _cancel(client_for(owner), execution)

    cancelled = Execution.objects.get(pk=execution.pk)
    last_attempt_at_cancel = StepRun.objects.filter(execution=execution).aggregate(last=Max("id"))["last"]
    wait_until(lambda: not _running(execution).exists(), timeout=60, what="the running items to finish")
    wait_until(lambda: not _left_anywhere(execution, group.queue_name), timeout=60,
               what="the run's queued tasks to be dropped")
    assert not StepRun.objects.filter(execution=execution, id__gt=last_attempt_at_cancel).exists()
    assert not cancelled.events.filter(seq__gt=cancelled.event_seq, type=EventType.STEP_STARTED).exists()
    assert StepRun.objects.filter(execution=execution, node_id="each").count() < 20
    finishing = cancelled.events.get(type=EventType.EXECUTION_CANCELLED).data["finishing"]
    states = {(e.data["node_id"], e.data["shard"]): e.data["state"]
              for e in cancelled.events.filter(type=EventType.STEP_CANCELLED)}
    assert finishing and all(states[("each", item["shard"])] == "finishing" for item in finishing)
    assert states[("after", 0)] == "pending"
    assert Execution.objects.get(pk=execution.pk).status == ExecutionStatus.CANCELLED
    # The items were published as segments, through the same tracking.
    item_tasks = set(StepRun.objects.filter(execution=execution, node_id="each").values_list("task_id", flat=True))
    assert item_tasks and item_tasks <= run_task_ids(execution.pk)
