"""Lost work: attempts whose worker went offline are marked lost and their task re-published, and
the other messages such a worker held go back on their queues. The re-published task is due after
the node's retry delay (`pipelines.engine.decider.lost_retry_delay`), as after a failed attempt.

Connected to the `controlplane.fleet.hooks` signals (see `apps.py`). The re-published
message carries the SAME task id and the stored chain/chord/group options (as Celery's own
`Task.retry` does through `signature_from_request`), so a chord counts it as the same header
part; the new delivery finds no running attempt and claims attempt + 1. The step presents the
same idempotency key, so a side effect the dead worker already caused is not repeated by a server
that honours the key.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction

from controlplane.executions.models import StepRun, StepStatus
from controlplane.executions.services.attempts import mark_lost
from controlplane.executions.services.events import locked_execution
from controlplane.executions.services.state import pinned_graph
from controlplane.fleet.models import Worker, WorkerStatus
from pipelines.engine.decider import lost_retry_delay

logger = logging.getLogger(__name__)


def lost_work_recover(hostnames: list[str]) -> tuple[int, int]:
    """The fleet hook for workers that went offline: their running attempts are marked lost and
    re-published (`step_runs_recover_lost`); then every other message they had received and not
    acknowledged goes back on its queue at once (`controlplane.executions.redelivery`) instead of after Redis's
    visibility timeout. Returns (attempts re-published, messages put back)."""
    republished = _recover_running_steps(hostnames)
    return len(republished), _unacked_restore(hostnames, skip_task_ids=republished)


def step_runs_recover_lost(hostnames: list[str]) -> int:
    """Mark every running attempt on these (offline) workers lost and re-publish it; returns how many."""
    return len(_recover_running_steps(hostnames))


def _recover_running_steps(hostnames: list[str]) -> set[str]:
    """The Celery task ids re-published."""
    candidates = StepRun.objects.filter(status=StepStatus.RUNNING, worker__in=list(hostnames))
    return _recover(candidates.values_list("id", "execution_id"), lambda run: f"worker {run.worker} went offline")


def worker_replaced_recover(hostname: str, started_at: datetime) -> tuple[int, int]:
    """The fleet hook for a new process under a known hostname: what the previous process had
    claimed (attempts started before this one did) is lost and re-published, and the messages it
    had received and not acknowledged go back on their queues. Returns (re-published, put back)."""
    candidates = StepRun.objects.filter(status=StepStatus.RUNNING, worker=hostname, started_at__lt=started_at)
    republished = _recover(candidates.values_list("id", "execution_id"),
                           lambda run: f"worker {run.worker} was replaced by a new process under the same name")
    restored = 0
    for queues in Worker.objects.filter(hostname=hostname).values_list("queues", flat=True):
        restored += _unacked_restore_queues(set(queues or []), started_at, skip_task_ids=republished)
    return len(republished), restored


def step_runs_recover_orphaned() -> int:
    """Running attempts whose process is gone although their worker lives on are lost and
    re-published; returns how many. For beat, beside the offline sweep.

    - The pool child that claimed it died (the OOM killer's usual victim): the worker's latest
      heartbeat, taken after the claim, no longer lists the attempt's pid among its pool's processes.
      Celery re-queues such a message, but its redelivery finds the attempt running and stands back.
    - It was claimed before the worker's current process started (a replacement under the same
      name whose first heartbeat's hook did not get to run).
    """
    margin = timedelta(seconds=1)
    running = list(StepRun.objects.filter(status=StepStatus.RUNNING, pid__isnull=False)
                   .values_list("id", "execution_id", "worker", "pid", "started_at"))
    if not running:
        return 0
    live = {w.hostname: w for w in Worker.objects.filter(
        hostname__in={row[2] for row in running}, status=WorkerStatus.ONLINE)}
    orphaned = []
    for run_id, execution_id, hostname, pid, started_at in running:
        worker = live.get(hostname)
        if worker is None or started_at is None:
            continue  # offline workers are recovered by the offline sweep
        if started_at < worker.started_at or (
                worker.pool_pids and pid not in worker.pool_pids and worker.last_heartbeat > started_at + margin):
            orphaned.append((run_id, execution_id))
    return len(_recover(orphaned, lambda run: f"the process (pid {run.pid}) that ran it on {run.worker} is gone"))


def _recover(candidates, reason) -> set[str]:
    """Mark each (attempt id, execution id) still running lost with `reason(run)` and re-publish its
    task after commit; the Celery task ids re-published."""
    republished: set[str] = set()
    for run_id, execution_id in candidates:
        with transaction.atomic():
            execution = locked_execution(execution_id)
            run = StepRun.objects.select_for_update().get(pk=run_id)
            if run.status != StepStatus.RUNNING:
                continue  # it reported after all
            delay = lost_retry_delay(pinned_graph(execution.pk, execution.graph).graph.job(run.node_id), run.attempt)
            mark_lost(execution, run, reason=reason(run), retry_in_s=delay)
            if run.request:
                transaction.on_commit(lambda request=run.request, queue=run.queue, delay=delay:
                                      _republish(request, queue, delay))
                republished.add(run.task_id)
    if republished:
        logger.warning("step.recovered_lost", extra={"count": len(republished)})
    return republished


def _unacked_restore(hostnames: list[str], *, skip_task_ids: set[str]) -> int:
    restored = 0
    # A worker can have died any time up to one heartbeat after its last one.
    grace = timedelta(seconds=float(settings.WORKER_HEARTBEAT_INTERVAL_S))
    for queues, last_heartbeat in Worker.objects.filter(hostname__in=list(hostnames)).values_list(
            "queues", "last_heartbeat"):
        restored += _unacked_restore_queues(set(queues or []), last_heartbeat + grace, skip_task_ids=skip_task_ids)
    return restored


def _unacked_restore_queues(queues: set[str], delivered_before: datetime, *, skip_task_ids: set[str]) -> int:
    from controlplane.executions.redelivery import unacked_restore

    return unacked_restore(queues, delivered_before, skip_task_ids=skip_task_ids)


def _republish(request: dict, queue: str, countdown: float) -> None:
    from controlplane.executions.dispatch import republish  # dispatch imports the services: at call time

    republish(request, queue, countdown=countdown)


def step_runs_expire() -> int:
    """Attempts still `running` long past their hard time limit (Celery killed the child and
    acknowledged the message, so nobody will report or redeliver it) are marked lost and fail
    their run: a step fails the execution (saga), a compensation fails the saga. For beat."""
    from controlplane.executions.models import EventType, ExecutionStatus
    from controlplane.executions.services.attempts import attempt_expired
    from controlplane.executions.services.steps import fail_execution
    from controlplane.executions.store import store_write

    candidates = StepRun.objects.filter(status=StepStatus.RUNNING).select_related("execution")
    expired = [(run.pk, run.execution_id) for run in candidates if attempt_expired(run, run.execution.job(run.node_id))]
    for run_id, execution_id in expired:
        with transaction.atomic():
            execution = locked_execution(execution_id)
            run = StepRun.objects.select_for_update().get(pk=run_id)
            if run.status != StepStatus.RUNNING:
                continue
            reason = "killed at its hard time limit"
            mark_lost(execution, run, reason=reason)
            error = {"node_id": run.node_id, "shard": run.shard, "attempt": run.attempt,
                     "error": {"message": reason, "retryable": False, "details": {"reason": "timeout"}}}
            if not run.is_compensation:
                fail_execution(execution, error=error, saga_queue=run.queue)
            elif execution.status == ExecutionStatus.COMPENSATING:
                execution.status = ExecutionStatus.COMPENSATION_FAILED
                store_write(execution=execution, events=[(EventType.SAGA_COMPENSATION_FAILED, error)],
                            execution_fields=["status"])
    return len(expired)
