"""Cancelling a run: stop every task of it, record each step it stopped, compensate when asked.

Under the run's row lock the run leaves `running` (so from that commit on, no claim of any of its
steps succeeds: the locked claim reads the status under the same lock, the lock-free writes
apply only to a running run) and each step not yet completed gets a `step.cancelled` event:

- pending (never started, or waiting for its retry's countdown): nothing of it will start;
- running, on a node declaring `interruptible: true`: its attempt is recorded `cancelled` and
  its task terminated (SIGTERM to the pool process); whatever it reports afterwards is dropped;
- running otherwise: it finishes its attempt, which is recorded, but cannot move the run on
  (its successors' claims refuse, the finish refuses, a failure is not retried).

After the commit every task id the run's publishes recorded (`task_ids`) is revoked on the
workers of its queues: a worker drops a revoked message when it receives it (queued, prefetched)
or when its countdown or ETA comes (a retry keeps its task id). Revoking is what empties the
broker; the status check is what guarantees it, also on a worker that never heard of the revoke.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

from django.db import transaction
from django.utils import timezone

from controlplane.core.errors import ApplicationError, Conflict
from controlplane.executions.models import EventType, Execution, ExecutionStatus, StepRun, StepStatus
from controlplane.executions.services.start import execution_queues
from controlplane.executions.services import steps as step_services
from controlplane.executions.store import attempt_records, locked_execution, pinned_graph, store_write
from controlplane.fleet.models import Worker, WorkerStatus
from controlplane.tenancy.access import require_role
from controlplane.tenancy.models import Role

logger = logging.getLogger(__name__)

# The statuses a cancel stops. A waiting run (stopped at an approval) holds no task, so the rest
# (events, revoke, saga) applies to it unchanged; its pending approval is closed by the approvals
# sweep once the run has ended, and a decision on it meanwhile is refused (`not_waiting`).
CANCELLABLE = (ExecutionStatus.PENDING, ExecutionStatus.RUNNING, ExecutionStatus.WAITING)
MAX_REASON = 2000

# A step's state when its run was cancelled, as its `step.cancelled` event says.
PENDING, RETRYING, INTERRUPTED, FINISHING = "pending", "retrying", "interrupted", "finishing"


def execution_cancel(*, execution: Execution, user, compensate: bool = False, reason: str | None = None) -> Execution:
    """Cancel a pending, running or waiting run (editors); the run as it is now.

    Without `compensate` the run is `cancelled` at once. With it the run is `compensating`
    until its saga, in a task of its own, has waited (bounded) for the steps still running to
    finish their attempt and undone every completed step, latest first; it then ends `cancelled`
    (`saga.compensated` names what was undone), or `compensation_failed` if an undo failed for
    good. A run already finished, failing, compensating or cancelled is a 409 `not_cancellable`:
    a cancel racing the run's own end finds whichever committed first.
    """
    require_role(user, execution.company_id, Role.EDITOR, what="execution")
    if not isinstance(compensate, bool):
        raise ApplicationError("compensate must be true or false", path="compensate")
    if reason is not None and (not isinstance(reason, str) or len(reason) > MAX_REASON):
        raise ApplicationError(f"reason must be a string of at most {MAX_REASON} characters", path="reason")
    by = getattr(user, "username", None)
    with transaction.atomic():
        locked = locked_execution(execution.pk)
        if locked.status not in CANCELLABLE:
            raise Conflict(f"execution is {locked.status}; only pending, running or waiting executions can be "
                           "cancelled", code="not_cancellable")
        jobs = pinned_graph(locked.pk, locked.graph).jobs
        running = list(StepRun.objects.filter(execution_id=locked.pk, status=StepStatus.RUNNING, is_compensation=False)
                       .only("id", "node_id", "shard", "attempt", "worker", "task_id", "status"))
        interrupted = [run for run in running if (jobs.get(run.node_id) or {}).get("interruptible")]
        now = timezone.now()
        for run in interrupted:
            run.status, run.finished_at = StepStatus.CANCELLED, now
            run.error = {"message": f"interrupted: the run was cancelled by {by or 'the system'}", "retryable": False,
                         "details": {"reason": "cancelled"}}
        steps = _step_events(jobs, attempt_records(locked.pk, with_output=False), running, interrupted)
        locked.status = ExecutionStatus.COMPENSATING if compensate else ExecutionStatus.CANCELLED
        locked.finished_at = None if compensate else now
        cancelled = {"by": by, "reason": reason, "compensate": compensate,
                     "interrupted": _shards(interrupted),
                     "finishing": _shards(run for run in running if run not in interrupted)}
        store_write(execution=locked, events=[(EventType.EXECUTION_CANCELLED, cancelled), *steps],
                    update=[(run, ["status", "finished_at", "error"]) for run in interrupted],
                    execution_fields=["status", "finished_at"])
        execution_id, queues = locked.pk, execution_queues(locked)
        terminate = [(run.worker, run.task_id) for run in interrupted if run.task_id]
        saga_queue = queues.get(locked.graph["jobs"][0]["group"]) if compensate and locked.graph.get("jobs") else None
        transaction.on_commit(lambda: _stop_tasks(execution_id, set(queues.values()), terminate))
        if saga_queue:
            transaction.on_commit(lambda: step_services._dispatch_saga(execution_id, saga_queue))
    logger.info("execution.cancelled", extra={"execution_id": str(locked.pk), "compensate": compensate,
                                              "interrupted": len(interrupted), "steps": len(steps)})
    return locked


def _step_events(jobs: dict[str, dict], records, running: list[StepRun], interrupted: list[StepRun]):
    """A `step.cancelled` event per shard that has not completed, in graph order."""
    latest: dict[tuple[str, int], Any] = {}
    for record in records:  # oldest first: the last one of a shard is its latest attempt
        latest[(record.node_id, record.shard)] = record
    interrupted_ids = {run.pk for run in interrupted}
    running_ids = {run.pk for run in running}
    events = []
    seen: dict[str, set[int]] = defaultdict(set)
    for node_id, shard in latest:
        seen[node_id].add(shard)
    for node_id, job in jobs.items():
        # A map's items are shards known only once it expanded: those with an attempt are listed.
        for shard in sorted(set(range(int(job.get("replicas") or 1))) | seen[node_id]):
            record = latest.get((node_id, shard))
            if record is None:
                state = PENDING
            elif record.id in interrupted_ids:
                state = INTERRUPTED
            elif record.id in running_ids:
                state = FINISHING
            elif record.status in (StepStatus.FAILED, StepStatus.LOST):
                state = RETRYING  # its next try was due
            else:
                continue  # succeeded or skipped: done before the cancel
            attempt = {} if record is None else {"attempt": record.attempt}
            events.append((EventType.STEP_CANCELLED, {"node_id": node_id, "shard": shard, "state": state, **attempt}))
    return events


def _shards(runs) -> list[dict[str, Any]]:
    return [{"node_id": run.node_id, "shard": run.shard, "attempt": run.attempt} for run in runs]


def _stop_tasks(execution_id, queues: set[str], terminate: list[tuple[str, str]]) -> None:
    """Terminate the interrupted attempts' tasks, then revoke every task of the run on the workers
    of its queues. A broker error is logged: the run is cancelled in PostgreSQL, which every claim
    reads, so a task the revoke missed is refused when it arrives."""
    from controlplane.core.celery_app import app
    from controlplane.executions.task_ids import run_task_ids

    try:
        by_worker: dict[str, list[str]] = defaultdict(list)
        for worker, task_id in terminate:
            by_worker[worker].append(task_id)
        for worker, task_ids in by_worker.items():
            app.control.revoke(task_ids, terminate=True, signal="SIGTERM", destination=[worker])
        task_ids = sorted(run_task_ids(execution_id))
        hosts = _workers_of(queues)
        if task_ids and hosts:
            app.control.revoke(task_ids, destination=hosts)
        logger.info("execution.cancel_revoked", extra={"execution_id": str(execution_id), "tasks": len(task_ids),
                                                       "workers": len(hosts), "terminated": len(terminate)})
    except Exception:
        logger.exception("execution.cancel_revoke_failed", extra={"execution_id": str(execution_id)})


def _workers_of(queues: set[str]) -> list[str]:
    """Hostnames of the online workers consuming any of `queues`: the only ones holding its tasks."""
    rows = Worker.objects.filter(status=WorkerStatus.ONLINE).values_list("hostname", "queues")
    return sorted(hostname for hostname, consumed in rows if queues & set(consumed or ()))
