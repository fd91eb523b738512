"""Faults a real fleet sees every day that are not a whole worker going silent: the pool child
running a step is killed (the OOM killer's usual victim), and a worker is replaced by a new process
under the same node name (a restarted container or systemd unit), and the broker losing the run's
next message. Every run completes, and the step's side effect happens once."""
from __future__ import annotations

import os
import signal
import threading
from datetime import timedelta

import pytest

from controlplane.executions.models import (
    TERMINAL_EXECUTION_STATUSES, EventType, Execution, ExecutionStatus, StepRun, StepStatus,
)
from controlplane.executions.services import execution_start, executions_redrive_stalled, step_runs_recover_orphaned
from tests.controlplane.executions.builders import edges, job, make_deployment
from tests.e2e.engine_support import (  # noqa: F401  (fixtures)
    HOSTS, WORKER_ENV, fleet, recorder, wait_for_end,
)
from tests.e2e.harness import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def charge_then_after(project, owner, recorder):
    return make_deployment(project, [
        # A lost attempt counts against max_attempts: the step has a second one to give.
        job("charge", "http", config={"url": recorder.url("/charge"), "method": "POST", "json": {"amount": 5}},
            timeout_s=30, retry={"max_attempts": 2}),
        job("after", group="load"),
    ], edges(("charge", "after")), user=owner)


def attempts(execution, node_id="charge"):
    return list(StepRun.objects.filter(execution=execution, node_id=node_id).order_by("attempt")
                .values_list("attempt", "status", "worker"))


def test_a_killed_pool_child_is_retried_and_the_side_effect_happens_once(fleet, recorder, project, owner, settings):
    settings.WORKER_OFFLINE_AFTER_S = 600  # the worker stays online throughout: not the offline path
    recorder.hold["/charge"] = threading.Event()
    execution, _ = execution_start(deployment=charge_then_after(project, owner, recorder), input={}, user=owner)
    wait_until(lambda: "/charge" in recorder.paths(), timeout=20, what="the charge request")
    claimed = StepRun.objects.get(execution=execution, node_id="charge", status=StepStatus.RUNNING)
    assert claimed.pid and claimed.pid != fleet.workers["ingest"].pid  # a pool child, not the main process

    os.kill(claimed.pid, signal.SIGKILL)
    # Celery re-queues the killed child's message; its redelivery (or the sweep beat would run)
    # finds the claimer gone instead of taking the attempt for running.
    wait_until(lambda: step_runs_recover_orphaned() >= 0 and StepRun.objects.filter(
        execution=execution, status=StepStatus.LOST).exists(), timeout=30, interval=0.5,
        what="the killed child's attempt to be marked lost")
    recorder.hold["/charge"].set()
    execution = wait_for_end(execution, timeout=30)

    assert execution.status == ExecutionStatus.SUCCEEDED, execution.error
    assert recorder.effects["/charge"] == 1
    assert attempts(execution) == [(1, "lost", HOSTS["ingest"]), (2, "succeeded", HOSTS["ingest"])]
    assert fleet.workers["ingest"].process.poll() is None  # the worker itself lived on


def test_a_replacement_under_the_same_node_name_recovers_what_the_previous_process_held(
    fleet, recorder, start_worker, project, owner, settings
):
    settings.WORKER_OFFLINE_AFTER_S = 600  # nothing is ever swept offline: only the new process can tell
    recorder.hold["/charge"] = threading.Event()
    execution, _ = execution_start(deployment=charge_then_after(project, owner, recorder), input={}, user=owner)
    wait_until(lambda: "/charge" in recorder.paths(), timeout=20, what="the charge request")

    fleet.workers["ingest"].kill9()
    start_worker([fleet.queue("ingest")], HOSTS["ingest"], extra_env=WORKER_ENV)  # the same name
    wait_until(lambda: StepRun.objects.filter(execution=execution, status=StepStatus.LOST).exists(),
               timeout=30, interval=0.25, what="the replacement to recover the claimed attempt")
    recorder.hold["/charge"].set()
    execution = wait_for_end(execution, timeout=30)

    assert execution.status == ExecutionStatus.SUCCEEDED, execution.error
    assert recorder.effects["/charge"] == 1
    assert attempts(execution) == [(1, "lost", HOSTS["ingest"]), (2, "succeeded", HOSTS["ingest"])]
    lost = execution.events.filter(type=EventType.STEP_LOST).get()
    assert "replaced" in lost.data["reason"]


def test_a_run_whose_next_message_the_broker_lost_is_re_driven_by_the_watchdog(
    fleet, recorder, start_worker, project, owner, settings, redis_test_db
):
    # Redis restarted without persistence: the queued message of the run's next step is gone, and
    # nothing is running, so no lost-attempt sweep can see the run. Only the store knows.
    settings.EXECUTION_STALL_AFTER_S = 1
    deployment = charge_then_after(project, owner, recorder)
    fleet.workers["load"].kill9()  # still looks live for a while, so the run starts
    execution, _ = execution_start(deployment=deployment, input={}, user=owner)
    load_queue = fleet.queue("load")
    wait_until(lambda: redis_test_db.llen(load_queue) > 0, timeout=20, what="the next step's message to be queued")
    fleet.workers["ingest"].stop()
    redis_test_db.flushdb()  # what a restart without persistence leaves
    start_worker([fleet.queue("ingest")], "ingest2@e2e", extra_env=WORKER_ENV)
    start_worker([load_queue], "load2@e2e", extra_env=WORKER_ENV)

    assert not StepRun.objects.filter(execution=execution, node_id="after").exists()
    execution = wait_until(lambda: executions_redrive_stalled() and Execution.objects.filter(
        pk=execution.pk, status__in=TERMINAL_EXECUTION_STATUSES).first(), timeout=30, interval=0.5,
        what="the watchdog to re-drive the run to its end")

    assert execution.status == ExecutionStatus.SUCCEEDED, execution.error
    assert recorder.effects["/charge"] == 1 and recorder.paths().count("/charge") == 1  # not run again
    assert attempts(execution) == [(1, "succeeded", HOSTS["ingest"])]
    assert attempts(execution, "after") == [(1, "succeeded", "load2@e2e")]
    assert execution.events.filter(type=EventType.EXECUTION_REDRIVEN).exists()


def test_a_killed_pool_child_s_attempt_is_retried_after_the_node_s_retry_delay(
        fleet, recorder, project, owner, settings):
    settings.WORKER_OFFLINE_AFTER_S = 600  # neither the offline path nor the orphan sweep: Celery's redelivery
    recorder.hold["/charge"] = threading.Event()
    deployment = make_deployment(project, [
        job("charge", "http", config={"url": recorder.url("/charge"), "method": "POST", "json": {}}, timeout_s=30,
            retry={"max_attempts": 2, "initial_delay_s": 2, "jitter": False}),
    ], user=owner)
    execution, _ = execution_start(deployment=deployment, input={}, user=owner)
    wait_until(lambda: "/charge" in recorder.paths(), timeout=20, what="the charge request")
    claimed = StepRun.objects.get(execution=execution, node_id="charge", status=StepStatus.RUNNING)

    os.kill(claimed.pid, signal.SIGKILL)
    lost = wait_until(lambda: execution.events.filter(type=EventType.STEP_LOST).first(), timeout=30, interval=0.2,
                      what="the redelivery to record the killed child's attempt lost")
    recorder.hold["/charge"].set()
    execution = wait_for_end(execution, timeout=30)

    assert execution.status == ExecutionStatus.SUCCEEDED, execution.error
    assert (lost.data["attempt"], lost.data["retry_in_s"]) == (1, 2.0)
    second = StepRun.objects.get(execution=execution, node_id="charge", attempt=2)
    # Not at once: the next attempt started no sooner than the policy's delay after the loss.
    assert second.started_at >= lost.created_at + timedelta(seconds=2)
