"""Lost work: attempts whose worker went offline are marked lost and their task re-published, and
the other messages such a worker held go back on their queues.

Registered into `controlplane.fleet.hooks.on_workers_offline` (see `apps.py`). The re-published
message carries the SAME task id and the stored chain/chord/group options (as Celery's own
`Task.retry` does through `signature_from_request`), so a chord counts it as the same header
part; the new delivery finds no running attempt and claims attempt + 1. The step presents the
same idempotency key, so a side effect the dead worker already caused is not repeated by a server
that honours the key.
"""
from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction

from controlplane.executions.models import StepRun, StepStatus
from controlplane.executions.services.attempts import mark_lost
from controlplane.executions.services.events import locked_execution
from controlplane.fleet.models import Worker

logger = logging.getLogger(__name__)


def lost_work_recover(hostnames: list[str]) -> tuple[int, int]:
    """The fleet hook for workers that went offline: their running attempts are marked lost and
    re-published (`step_runs_recover_lost`); then every other message they had received and not
    acknowledged goes back on its queue at once (`workers.redelivery`) instead of after Redis's
    visibility timeout. Returns (attempts re-published, messages put back)."""
    republished = _recover_running_steps(hostnames)
    return len(republished), _unacked_restore(hostnames, skip_task_ids=republished)


def step_runs_recover_lost(hostnames: list[str]) -> int:
    """Mark every running attempt on these (offline) workers lost and re-publish it; returns how many."""
    return len(_recover_running_steps(hostnames))


def _recover_running_steps(hostnames: list[str]) -> set[str]:
    """The Celery task ids re-published."""
    candidates = list(
        StepRun.objects.filter(status=StepStatus.RUNNING, worker__in=list(hostnames)).values_list("id", "execution_id")
    )
    republished: set[str] = set()
    for run_id, execution_id in candidates:
        with transaction.atomic():
            execution = locked_execution(execution_id)
            run = StepRun.objects.select_for_update().get(pk=run_id)
            if run.status != StepStatus.RUNNING:
                continue  # it reported after all
            mark_lost(execution, run, reason=f"worker {run.worker} went offline")
            if run.request:
                transaction.on_commit(lambda request=run.request, queue=run.queue: _republish(request, queue))
                republished.add(run.task_id)
    if republished:
        logger.warning("step.recovered_lost", extra={"hostnames": list(hostnames), "count": len(republished)})
    return republished


def _unacked_restore(hostnames: list[str], *, skip_task_ids: set[str]) -> int:
    from workers.redelivery import unacked_restore  # workers depends on us; import at call time

    restored = 0
    # A worker can have died any time up to one heartbeat after its last one.
    grace = timedelta(seconds=float(settings.WORKER_HEARTBEAT_INTERVAL_S))
    for queues, last_heartbeat in Worker.objects.filter(hostname__in=list(hostnames)).values_list(
            "queues", "last_heartbeat"):
        restored += unacked_restore(set(queues or []), last_heartbeat + grace, skip_task_ids=skip_task_ids)
    return restored


def _republish(request: dict, queue: str) -> None:
    from workers.routing import republish  # workers depends on us; import at call time

    republish(request, queue)


def step_runs_expire() -> int:
    """Attempts still `running` long past their hard time limit (Celery killed the child and
    acknowledged the message, so nobody will report or redeliver it) are marked lost and fail
    their run: a step fails the execution (saga), a compensation fails the saga. For beat."""
    from controlplane.executions.models import EventType, ExecutionStatus
    from controlplane.executions.services.attempts import attempt_expired
    from controlplane.executions.services.events import event_append
    from controlplane.executions.services.steps import fail_execution

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
                execution.save(update_fields=["status"])
                event_append(execution=execution, type=EventType.SAGA_COMPENSATION_FAILED, data=error)
    return len(expired)
