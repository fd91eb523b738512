"""Lost steps: attempts whose worker went offline are marked lost and their task re-published.

Registered into `controlplane.fleet.hooks.on_workers_offline` (see `apps.py`). The re-published
message carries the SAME task id and the stored chain/chord/group options (as Celery's own
`Task.retry` does through `signature_from_request`), so a chord counts it as the same header
part; the new delivery finds no running attempt and claims attempt + 1. The step presents the
same idempotency key, so a side effect the dead worker already caused is not repeated by a server
that honours the key.
"""
from __future__ import annotations

import logging

from django.db import transaction

from controlplane.executions.models import StepRun, StepStatus
from controlplane.executions.services.attempts import mark_lost
from controlplane.executions.services.events import locked_execution

logger = logging.getLogger(__name__)


def step_runs_recover_lost(hostnames: list[str]) -> int:
    """Mark every running attempt on these (offline) workers lost and re-publish it; returns how many."""
    candidates = list(
        StepRun.objects.filter(status=StepStatus.RUNNING, worker__in=list(hostnames)).values_list("id", "execution_id")
    )
    recovered = 0
    for run_id, execution_id in candidates:
        with transaction.atomic():
            execution = locked_execution(execution_id)
            run = StepRun.objects.select_for_update().get(pk=run_id)
            if run.status != StepStatus.RUNNING:
                continue  # it reported after all
            mark_lost(execution, run, reason=f"worker {run.worker} went offline")
            if run.request:
                transaction.on_commit(lambda request=run.request, queue=run.queue: _republish(request, queue))
            recovered += 1
    if recovered:
        logger.warning("step.recovered_lost", extra={"hostnames": list(hostnames), "count": recovered})
    return recovered


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
