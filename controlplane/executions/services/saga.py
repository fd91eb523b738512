"""The saga: undo completed steps in reverse completion order after a final failure.

`saga_start` runs once per failed execution (the running -> compensating transition publishes it
once; a redelivered saga task sees `saga.compensating` already recorded and stops). It waits until
no step of the run is still running (a branch in flight may still complete, and then it must be
undone too), then publishes one chain: a `flowplane.compensate` per succeeded step that has a
`compensate` spec, latest completion first, each on the queue where the step ran (or its
compensation's own group), then `flowplane.saga_finish`. Steps that never completed are not
compensated. A compensation is claimed like a step (is_compensation=True), so it runs once.
"""
from __future__ import annotations

from django.db import IntegrityError, transaction
from django.utils import timezone

from controlplane.executions.models import EventType, Execution, ExecutionStatus, StepRun, StepStatus
from controlplane.executions.services.attempts import (
    MAX_WAITS,
    Delivery,
    Outcome,
    attempt_expired,
    mark_lost,
    run_spec,
    wait_countdown,
)
from controlplane.executions.services.events import event_append, locked_execution
from controlplane.executions.services.state import runs_by_shard, template_context
from controlplane.fleet.models import queue_name_for
from pipelines.graph import RetryPolicy


def saga_start(*, execution_id, delivery: Delivery) -> Outcome:
    """Plan and publish the compensation chain of a failed run, once."""
    with transaction.atomic():
        execution = locked_execution(execution_id)
        if execution.status != ExecutionStatus.COMPENSATING:
            return Outcome("ignore", execution.status, detail=f"execution is {execution.status}")
        if execution.events.filter(type=EventType.SAGA_COMPENSATING).exists():
            return Outcome("ignore", execution.status, detail="saga already started")
        runs = list(execution.step_runs.filter(is_compensation=False))
        running = sorted({r.node_id for r in runs if r.status == StepStatus.RUNNING})
        if running and delivery.retries < MAX_WAITS:
            return Outcome("wait", "waiting", countdown=wait_countdown(delivery.retries),
                           detail=f"steps {running} are still running")
        jobs = {job["id"]: job for job in execution.graph["jobs"]}
        undo = sorted(
            (r for r in runs if r.status == StepStatus.SUCCEEDED and jobs[r.node_id].get("compensate")),
            key=lambda r: r.completed_seq or 0,
            reverse=True,
        )
        plan = [(r.pk, compensation_queue(execution, r, jobs[r.node_id])) for r in undo]
        event_append(
            execution=execution,
            type=EventType.SAGA_COMPENSATING,
            data={"steps": [{"node_id": r.node_id, "shard": r.shard, "queue": q} for r, (_, q) in zip(undo, plan)],
                  "still_running": running},
        )
        transaction.on_commit(lambda: _dispatch_compensations(execution_id, plan, delivery.queue))
        return Outcome("done", "compensating", detail=f"{len(plan)} compensation(s)")


def compensation_queue(execution: Execution, run: StepRun, job: dict) -> str:
    group = (job.get("compensate") or {}).get("group")
    return queue_name_for(execution.company.slug, group) if group else run.queue


def _dispatch_compensations(execution_id, plan, finish_queue: str) -> None:
    from controlplane.executions.dispatch import compensation_signature  # dispatch imports the services: at call time

    compensation_signature(str(execution_id), plan, finish_queue).apply_async()


def compensation_execute(*, execution_id, step_run_id: int, delivery: Delivery) -> Outcome:
    """Claim, run and record one attempt of the compensation of step run `step_run_id`."""
    with transaction.atomic():
        execution = locked_execution(execution_id)
        if execution.status != ExecutionStatus.COMPENSATING:
            return Outcome("ignore", execution.status, detail=f"execution is {execution.status}")
        original = StepRun.objects.select_for_update().get(pk=step_run_id, execution=execution)
        job = execution.job(original.node_id)
        mine = list(execution.step_runs.filter(node_id=original.node_id, shard=original.shard, is_compensation=True))
        if any(r.status == StepStatus.SUCCEEDED for r in mine):
            return Outcome("done", StepStatus.SUCCEEDED, detail="already compensated")
        running = [r for r in mine if r.status == StepStatus.RUNNING]
        if running:
            if not attempt_expired(running[-1], job):
                return Outcome("ignore", "running", detail="duplicate delivery")
            mark_lost(execution, running[-1], reason="compensation ran past its hard time limit")
        spec = job["compensate"]
        try:
            with transaction.atomic():
                run = StepRun.objects.create(
                    execution=execution, node_id=original.node_id, shard=original.shard,
                    shard_count=original.shard_count, attempt=max((r.attempt for r in mine), default=0) + 1,
                    is_compensation=True, group=spec.get("group") or original.group, queue=delivery.queue,
                    worker=delivery.worker, task_id=delivery.task_id, status=StepStatus.RUNNING,
                    started_at=timezone.now(), request=delivery.request,
                )
        except IntegrityError:
            return Outcome("ignore", "running", detail="claimed concurrently by another delivery")
        original.status = StepStatus.COMPENSATING
        original.save(update_fields=["status"])
        context = template_context(execution, runs_by_shard(execution.step_runs.filter(is_compensation=False)))
        company_id = execution.company_id
        context["compensating"] = {"node_id": original.node_id, "shard": original.shard,
                                   "input": original.input, "output": original.output}
    rendered, output, error = run_spec(
        spec,
        context=context,
        company_id=company_id,
        execution_id=str(execution_id),
        node_id=original.node_id,
        attempt=run.attempt,
        shard=original.shard,
        shard_count=original.shard_count,
        idempotency_key=f"{execution_id}:{original.node_id}:{original.shard}:compensate",
        timeout_s=job.get("timeout_s"),
        group=run.group,
    )
    return _record_compensation(execution_id, run.pk, original.pk, job, rendered, output, error)


def _record_compensation(execution_id, run_id, original_id, job, rendered, output, error) -> Outcome:
    with transaction.atomic():
        execution = locked_execution(execution_id)
        run = StepRun.objects.select_for_update().get(pk=run_id)
        if run.status != StepStatus.RUNNING:
            return Outcome("ignore", run.status, detail=f"attempt was marked {run.status} while it ran")
        original = StepRun.objects.select_for_update().get(pk=original_id)
        run.input, run.finished_at = rendered, timezone.now()
        base = {"node_id": run.node_id, "shard": run.shard, "attempt": run.attempt, "compensation": True}
        if error is None:
            event = event_append(execution=execution, type=EventType.STEP_COMPENSATED, data={**base, "output": output})
            run.status, run.output, run.completed_seq = StepStatus.SUCCEEDED, output, event.seq
            run.save(update_fields=["input", "finished_at", "status", "output", "completed_seq"])
            original.status = StepStatus.COMPENSATED
            original.save(update_fields=["status"])
            return Outcome("done", StepStatus.COMPENSATED)
        run.status, run.error = StepStatus.FAILED, error
        run.save(update_fields=["input", "finished_at", "status", "error"])
        policy = RetryPolicy(**job["retry"])
        if error.get("retryable") and policy.should_retry(run.attempt):
            countdown = policy.delay_for(run.attempt)
            event_append(execution=execution, type=EventType.STEP_RETRYING,
                         data={**base, "error": error, "countdown_s": round(countdown, 3)})
            return Outcome("retry", StepStatus.FAILED, countdown=countdown, detail=error["message"])
        original.status = StepStatus.COMPENSATION_FAILED
        original.save(update_fields=["status"])
        execution.status = ExecutionStatus.COMPENSATION_FAILED
        execution.finished_at = timezone.now()
        event_append(execution=execution, type=EventType.SAGA_COMPENSATION_FAILED, data={**base, "error": error},
                     update_fields=["status", "finished_at"])
        return Outcome("fail", StepStatus.COMPENSATION_FAILED, detail=error["message"])


def saga_finish(*, execution_id, delivery: Delivery) -> Outcome:
    """End of the compensation chain: compensated, or failed when there was nothing to undo."""
    with transaction.atomic():
        execution = locked_execution(execution_id)
        if execution.status != ExecutionStatus.COMPENSATING:
            return Outcome("ignore", execution.status, detail=f"execution is {execution.status}")
        done = list(
            execution.step_runs.filter(is_compensation=True, status=StepStatus.SUCCEEDED)
            .order_by("completed_seq").values_list("node_id", "shard")
        )
        execution.status = ExecutionStatus.COMPENSATED if done else ExecutionStatus.FAILED
        execution.finished_at = timezone.now()
        event_append(execution=execution, type=EventType.SAGA_COMPENSATED,
                     data={"compensated": [{"node_id": n, "shard": s} for n, s in done]},
                     update_fields=["status", "finished_at"])
        return Outcome("done", execution.status)
