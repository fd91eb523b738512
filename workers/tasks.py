"""Thin task shims: take ids, call one service, turn its `Outcome` into Celery behaviour.

Every task is `acks_late` (a crash re-delivers rather than loses), has a stable name, and
`max_retries=None`: the node's retry policy (in the service) decides how often a step is tried,
and waits are bounded by the services (`MAX_WAITS`).

A step that fails for good RAISES `StepFailedFinally` rather than raising `Ignore`: a failed task
is what makes Celery stop a chain (no further link is published) and, for a chord header part,
what the result backend counts as a part that returned with an error, so the chord is closed,
its body never runs and its bookkeeping keys are dropped; `Ignore` would leave the chord counting
forever and hide the failure from Flower. The saga is not driven by Celery's error callbacks
(header failures and lost bodies make them unreliable); the service publishes it exactly once,
after the running -> compensating transition commits. Duplicates and runs that are no longer
running raise `Ignore`: nothing happened, nothing is counted.
"""
from __future__ import annotations

from celery import shared_task
from celery.exceptions import Ignore
from django.db import InterfaceError, OperationalError

from controlplane.core.logs import bind_task_context, clear_task_context
from controlplane.executions import services
from controlplane.executions.services.fused import steps_execute
from workers.routing import delivery_of

TASK_OPTIONS = dict(bind=True, acks_late=True, max_retries=None)


class StepFailedFinally(Exception):
    """A step or compensation failed after its last attempt; the run's flow stops here."""


# A lost database connection (server restart, network) is retried with backoff, up to this far apart.
DATABASE_RETRY_MAX_S = 30.0


def _run(task, service, **kwargs) -> dict:
    """Call `service` with the task's delivery and turn its `Outcome` into Celery behaviour.

    If the database went away under the task, nothing this try did was committed, or it was and
    the retry's claim sees it: retry (the next task_prerun replaces the broken connection).
    """
    delivery = delivery_of(task)
    bind_task_context(task=task.name, task_id=delivery.task_id, worker=delivery.worker,
                      execution_id=kwargs.get("execution_id"), node=kwargs.get("node_id"), shard=kwargs.get("shard"))
    try:
        try:
            outcome = service(delivery=delivery, **kwargs)
        except (InterfaceError, OperationalError) as exc:
            countdown = min(DATABASE_RETRY_MAX_S, 0.5 * 2 ** min(task.request.retries, 10))
            raise task.retry(exc=exc, countdown=countdown, max_retries=None) from exc
        return _act(task, outcome)
    finally:
        clear_task_context()


def _act(task, outcome: services.Outcome) -> dict:
    if outcome.action == "done":
        return outcome.result()
    if outcome.action in ("wait", "retry"):
        raise task.retry(countdown=outcome.countdown, max_retries=None)
    if outcome.action == "ignore":
        raise Ignore()
    raise StepFailedFinally(outcome.detail)


@shared_task(name="flowplane.step", throws=(StepFailedFinally,), **TASK_OPTIONS)
def step(self, execution_id: str, node_id: str, shard: int = 0, shards: int = 1, final: bool = False) -> dict:
    """One shard of one node; retries per the node's policy, soft/hard limits from timeout_s.
    `final`: the canvas's last task, which also finishes the run."""
    return _run(self, services.step_execute,
                execution_id=execution_id, node_id=node_id, shard=shard, shard_count=shards, final=final)


@shared_task(name="flowplane.steps", throws=(StepFailedFinally,), **TASK_OPTIONS)
def steps(self, execution_id: str, node_ids: list[str], final: bool = False) -> dict:
    """Several side-effect-free nodes of a chain, in order, in one task (a fused run); stops, as
    the chain would, at the first that waits, retries or fails; its retry runs only the rest."""
    return _run(self, steps_execute, execution_id=execution_id, node_ids=list(node_ids), final=final)


@shared_task(name="flowplane.merge", **TASK_OPTIONS)
def merge(self, execution_id: str, node_id: str, shards: int, final: bool = False) -> dict:
    """Join of a replicated node's shards (waits, bounded, until PostgreSQL has them all)."""
    return _run(self, services.merge_execute, execution_id=execution_id, node_id=node_id, shards=shards, final=final)


@shared_task(name="flowplane.barrier", **TASK_OPTIONS)
def barrier(self, execution_id: str, label: str, final: bool = False) -> dict:
    """A chord body without a node of its own."""
    return _run(self, services.barrier_execute, execution_id=execution_id, label=label, final=final)


@shared_task(name="flowplane.finish", **TASK_OPTIONS)
def finish(self, execution_id: str) -> dict:
    """Marks a run succeeded once every node is recorded; published only when the canvas's last
    task found a node still pending (the last task normally finishes the run itself)."""
    return _run(self, services.execution_finish, execution_id=execution_id)


@shared_task(name="flowplane.saga", **TASK_OPTIONS)
def saga(self, execution_id: str) -> dict:
    """Plan and publish the compensation chain (waits, bounded, for running steps first)."""
    return _run(self, services.saga_start, execution_id=execution_id)


@shared_task(name="flowplane.compensate", throws=(StepFailedFinally,), **TASK_OPTIONS)
def compensate(self, execution_id: str, step_run_id: int) -> dict:
    """Undo one completed step; retries per the node's policy."""
    return _run(self, services.compensation_execute, execution_id=execution_id, step_run_id=step_run_id)


@shared_task(name="flowplane.saga_finish", **TASK_OPTIONS)
def saga_finish(self, execution_id: str) -> dict:
    """Last link of the saga: compensated (or failed when nothing needed undoing)."""
    return _run(self, services.saga_finish, execution_id=execution_id)


@shared_task(name="flowplane.sweep", bind=True, acks_late=True, ignore_result=True)
def sweep(self) -> dict:
    """For beat: stale workers -> offline (their running steps are recovered by the fleet hook);
    attempts whose process is gone -> lost and re-published; attempts past their hard time limit
    -> lost, failing their run; runs with nothing running and no progress -> their canvas again;
    approvals past their deadline -> expired, their run compensating."""
    from controlplane.approvals.services import approvals_expire
    from controlplane.fleet.services import fleet_sweep

    return {"offline": fleet_sweep(), "orphaned": services.step_runs_recover_orphaned(),
            "expired": services.step_runs_expire(), "stalled": services.executions_redrive_stalled(),
            "approvals": approvals_expire()}


@shared_task(name="flowplane.reconcile_all", ignore_result=True, soft_time_limit=300, time_limit=360)
def reconcile_all() -> dict:
    """For beat: reconcile every active, unpinned deployment with auto_reconcile; no retries (next tick)."""
    from controlplane.deployments.services import reconcile_all as reconcile_all_deployments

    return {"reconciled": reconcile_all_deployments()["reconciled"]}


@shared_task(name="flowplane.schedule_fire", ignore_result=True, acks_late=True, soft_time_limit=60, time_limit=90)
def schedule_fire(schedule_id: int, scheduled_at: str | None = None) -> dict:
    """For beat: one tick of a deployment's schedule (overlap policy, catch-up), `scheduled_at` the
    tick's time as beat sent it (workers/beat.py); no retries: a tick redelivered after a crash is
    recognised by its scheduled time and starts nothing twice."""
    from controlplane.triggers.services import schedule_fire as fire

    return fire(schedule_id=schedule_id, scheduled_at=scheduled_at)


@shared_task(name="flowplane.triggers_sweep", ignore_result=True, soft_time_limit=120, time_limit=150)
def triggers_sweep() -> dict:
    """For beat: buffered schedule fires whose run may start now, and runs chained to finished runs."""
    from controlplane.triggers.services import triggers_sweep as sweep

    return sweep()
