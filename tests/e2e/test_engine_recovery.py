"""A worker killed (kill -9), or its database connection cut, in the middle of a step: the run
completes and the side effect happens once."""
from __future__ import annotations

import json
import threading

import pytest
from django.db import connection

from controlplane.executions.models import EventType, ExecutionStatus, StepRun, StepStatus
from controlplane.executions.services import execution_start
from controlplane.fleet.services import fleet_sweep
from tests.controlplane.executions.builders import edges, job, make_deployment
from tests.e2e.engine_support import (  # noqa: F401  (fixtures)
    WORKER_ENV, fleet, recorder, wait_for_end, wait_live,
)
from tests.e2e.harness import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_kill_9_mid_step_is_recovered_and_the_side_effect_happens_once(
    fleet, recorder, start_worker, project, owner, settings
):
    settings.WORKER_OFFLINE_AFTER_S = 2
    recorder.hold["/charge"] = threading.Event()
    deployment = make_deployment(project, [
        job("before", group="load"),
        # A lost attempt counts against max_attempts: the step has a second one to give.
        job("charge", "http", config={"url": recorder.url("/charge"), "method": "POST", "json": {"amount": 5}},
            timeout_s=30, retry={"max_attempts": 2}),
        job("after", group="load"),
    ], edges(("before", "charge"), ("charge", "after")), user=owner)

    execution, _ = execution_start(deployment=deployment, input={}, user=owner)
    wait_until(lambda: "/charge" in recorder.paths(), timeout=20, what="the charge request")
    fleet.workers["ingest"].kill9()
    replacement = start_worker([fleet.queue("ingest")], "ingest2@e2e", extra_env=WORKER_ENV)

    wait_until(lambda: fleet_sweep() or StepRun.objects.filter(execution=execution, status=StepStatus.LOST).exists(),
               timeout=20, interval=0.25, what="the killed worker to be swept offline")
    recorder.hold["/charge"].set()
    execution = wait_for_end(execution, timeout=30)

    assert execution.status == ExecutionStatus.SUCCEEDED, execution.error
    assert recorder.effects["/charge"] == 1
    assert recorder.paths().count("/charge") == 2  # the same Idempotency-Key, presented twice
    charge = list(StepRun.objects.filter(execution=execution, node_id="charge").order_by("attempt")
                  .values_list("attempt", "status", "worker"))
    assert charge == [(1, "lost", "ingest1@e2e"), (2, "succeeded", replacement.hostname)]
    assert execution.events.filter(type=EventType.STEP_LOST).count() == 1
    assert len({run.task_id for run in StepRun.objects.filter(execution=execution, node_id="charge")}) == 1


def _terminate_other_backends() -> int:
    """Cut every other connection to this test database (the workers'), as a server restart would."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                       " WHERE datname = current_database() AND pid <> pg_backend_pid()")
        return cursor.fetchone()[0]


def test_a_database_connection_cut_under_a_running_step_is_retried_and_the_side_effect_happens_once(
    fleet, recorder, project, owner
):
    recorder.hold["/charge"] = threading.Event()
    deployment = make_deployment(project, [
        job("before"),
        job("charge", "http", config={"url": recorder.url("/charge"), "method": "POST", "json": {"amount": 5}}),
        job("after"),
    ], edges(("before", "charge"), ("charge", "after")), user=owner)

    execution, _ = execution_start(deployment=deployment, input={}, user=owner)
    wait_until(lambda: "/charge" in recorder.paths(), timeout=20, what="the charge request")
    assert _terminate_other_backends() >= 1
    recorder.hold["/charge"].set()
    execution = wait_for_end(execution, timeout=30)

    assert execution.status == ExecutionStatus.SUCCEEDED, execution.error
    assert recorder.effects["/charge"] == 1
    # The call had completed: the worker retries recording its outcome, not the call.
    assert recorder.paths().count("/charge") == 1
    charge = list(StepRun.objects.filter(execution=execution, node_id="charge").order_by("attempt")
                  .values_list("attempt", "status", "worker"))
    assert charge == [(1, "succeeded", "ingest1@e2e")]


def test_a_database_connection_cut_before_a_step_is_claimed_retries_the_task(fleet, recorder, project, owner):
    # The connection breaks while the worker is idle: the next claim's query fails, and the task's
    # retry (not the step's) claims and runs it once.
    deployment = make_deployment(project, [
        job("charge", "http", config={"url": recorder.url("/charge"), "method": "POST", "json": {"amount": 5}}),
    ], [], user=owner)
    warm, _ = execution_start(deployment=deployment, input={}, user=owner)  # the pool child connects
    assert wait_for_end(warm, timeout=30).status == ExecutionStatus.SUCCEEDED
    assert _terminate_other_backends() >= 1
    execution, _ = execution_start(deployment=deployment, input={}, user=owner)
    execution = wait_for_end(execution, timeout=30)

    assert execution.status == ExecutionStatus.SUCCEEDED, execution.error
    assert recorder.paths().count("/charge") == 2  # once per run


def test_a_retry_waiting_for_its_countdown_on_a_killed_worker_is_handed_back_without_the_visibility_timeout(
    fleet, start_worker, project, owner, settings, redis_test_db
):
    # A side-effect-free step never runs as a claimed attempt, so it is not re-published: what the
    # dead worker held (here its retry, waiting for a 10 s countdown) must come back from Redis.
    settings.WORKER_OFFLINE_AFTER_S = 2
    deployment = make_deployment(project, [
        job("flaky", "fail", config={"fail_attempts": 1},
            retry={"max_attempts": 2, "initial_delay_s": 10, "max_delay_s": 10, "jitter": False}),
    ], [], user=owner)

    execution, _ = execution_start(deployment=deployment, input={}, user=owner)
    wait_until(lambda: execution.events.filter(type=EventType.STEP_RETRYING).exists(), timeout=20,
               what="the first attempt to fail")
    wait_until(lambda: any(json.loads(held)[0]["headers"].get("retries") == 1 for held in redis_test_db.hvals("unacked")),
               timeout=10, what="the worker to hold the retry")
    fleet.workers["ingest"].kill9()
    replacement = start_worker([fleet.queue("ingest")], "ingest2@e2e", extra_env=WORKER_ENV)

    wait_until(lambda: fleet_sweep(), timeout=20, interval=0.25, what="the killed worker to be swept offline")
    execution = wait_for_end(execution, timeout=30)

    assert execution.status == ExecutionStatus.SUCCEEDED, execution.error
    flaky = list(StepRun.objects.filter(execution=execution, node_id="flaky").order_by("attempt")
                 .values_list("attempt", "status", "worker"))
    assert flaky == [(1, "failed", "ingest1@e2e"), (2, "succeeded", replacement.hostname)]
