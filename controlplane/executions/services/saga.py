"""The saga: undo completed steps in reverse completion order after a final failure (or a cancel
that asked for it: `cancel.py`).

`saga_start` runs once per failed execution (the running -> compensating transition publishes it
once; a redelivered saga task sees `saga.compensating` already recorded and stops). It waits until
no step of the run is still running (a branch in flight may still complete, and then it must be
undone too), then publishes one chain: a `flowplane.compensate` per succeeded step that has a
`compensate` spec and ran in this run, latest completion first, each on the queue where the step
ran (or its compensation's own group), then `flowplane.saga_finish`. Steps that never completed
are not compensated, and neither are a replay's reused and mocked steps, which never ran in it:
`saga.compensating` lists them under `not_compensated` with the reason. A compensation is claimed
like a step (is_compensation=True), so it runs once, and runs the `compensate` spec of the
artifact its run pinned (`attempts.compensation_spec`), as a step runs its artifact's spec.
"""
from __future__ import annotations

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from controlplane.executions.models import EventType, Execution, ExecutionStatus, StepRun, StepStatus
from controlplane.executions.services.attempts import (
    MAX_WAITS,
    ArtifactRefused,
    Delivery,
    Outcome,
    compensation_spec,
    lost_counts,
    mark_lost,
    process_gone,
    run_spec,
    wait_countdown,
)
from controlplane.executions.services.state import pinned_graph, template_context
from controlplane.executions.services.events import event_append, was_cancelled
from controlplane.executions.services.map_items import map_item_or_none
from controlplane.executions.store import attempt_records, locked_execution, store_write
from controlplane.fleet.models import queue_name_for
from pipelines.engine import DONE, FAIL, IGNORE, RETRY, WAIT, AttemptRecord, DeliveryFacts, Job, Snapshot, decide, settle
from pipelines.engine.decider import RECORDED
from pipelines.engine.fanout import is_map, item_context


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
        jobs = pinned_graph(execution.pk, execution.graph).graph.by_id
        # Every shard is a step run of its own, so a replicated or map node is undone per shard
        # (per completed item); an empty map's join (a node of 0 shards) ran nothing to undo.
        done = [r for r in runs if r.status == StepStatus.SUCCEEDED and jobs[r.node_id].compensate and r.shard_count]
        not_run = prerecorded_steps(execution) if execution.replay_of_id else {}
        undo = sorted((r for r in done if (r.node_id, r.shard) not in not_run),
                      key=lambda r: r.completed_seq or 0, reverse=True)
        plan = [(r.pk, compensation_queue(execution, r, jobs[r.node_id])) for r in undo]
        event_append(
            execution=execution,
            type=EventType.SAGA_COMPENSATING,
            data={"steps": [{"node_id": r.node_id, "shard": r.shard, "queue": q} for r, (_, q) in zip(undo, plan)],
                  "still_running": running,
                  "not_compensated": [{"node_id": r.node_id, "shard": r.shard, **not_run[(r.node_id, r.shard)]}
                                      for r in done if (r.node_id, r.shard) in not_run]},
        )
        transaction.on_commit(lambda: _dispatch_compensations(execution_id, plan, delivery.queue))
        return Outcome("done", "compensating", detail=f"{len(plan)} compensation(s)")


def prerecorded_steps(execution: Execution) -> dict[tuple[str, int], dict]:
    """{(node, shard): why} of the replay's steps recorded without running (`step.reused`,
    `step.mocked`): this run did not perform their effect, so its saga must not undo it (a reused
    step's effect belongs to the original run, whose own saga answers for it)."""
    out = {}
    for type, data in execution.events.filter(type__in=(EventType.STEP_REUSED, EventType.STEP_MOCKED)).values_list(
            "type", "data"):
        if type == EventType.STEP_MOCKED:
            why = {"reason": "mocked", "detail": "the replay recorded a mocked output; the step never ran"}
        else:
            why = {"reason": "reused", "reused_from": data.get("reused_from"),
                   "detail": "the replay reused the original run's output; the step did not run again"}
        out[(data["node_id"], data["shard"])] = why
    return out


def compensation_queue(execution: Execution, run: StepRun, job: Job) -> str:
    group = (job.compensate or {}).get("group")
    return queue_name_for(execution.company.slug, group) if group else run.queue


def _dispatch_compensations(execution_id, plan, finish_queue: str) -> None:
    from controlplane.executions.dispatch import compensation_signature, publish  # dispatch imports the services

    publish(execution_id, compensation_signature(str(execution_id), plan, finish_queue))


def compensation_execute(*, execution_id, step_run_id: int, delivery: Delivery) -> Outcome:
    """Claim, run and record one attempt of the compensation of step run `step_run_id`: the claim
    is the engine's decider's (`decide(..., compensation=True)`), like a step's."""
    with transaction.atomic():
        execution = locked_execution(execution_id)
        if execution.status != ExecutionStatus.COMPENSATING:
            return Outcome("ignore", execution.status, detail=f"execution is {execution.status}")
        original = StepRun.objects.select_for_update().get(pk=step_run_id, execution=execution)
        pinned = pinned_graph(execution.pk, execution.graph)
        job = pinned.graph.job(original.node_id)
        mine = {run.pk: run for run in execution.step_runs.filter(
            node_id=original.node_id, shard=original.shard, is_compensation=True).order_by("id")}
        running = [run for run in mine.values() if run.status == StepStatus.RUNNING]
        facts = DeliveryFacts(task_id=delivery.task_id, retries=delivery.retries,
                              claimer_gone=bool(running) and process_gone(running[-1], delivery),
                              max_uncounted_lost=int(settings.STEP_MAX_LOST_ATTEMPTS))
        snapshot = Snapshot.of(execution.pk, execution.status, [_record_of(run) for run in mine.values()])
        decision = decide(pinned.graph, original.node_id, original.shard, snapshot, facts, timezone.now(),
                          compensation=True)
        if decision.kind == IGNORE:
            if decision.reason == RECORDED:
                return Outcome("done", StepStatus.SUCCEEDED, detail=decision.detail)
            return Outcome("ignore", decision.status, detail="duplicate delivery")
        if decision.lose is not None:
            mark_lost(execution, mine[decision.lose.record.id], reason=decision.lose.reason,
                      counts=decision.lose.counts, retry_in_s=decision.countdown if decision.kind == WAIT else None)
        base = {"node_id": original.node_id, "shard": original.shard, "attempt": decision.attempt,
                "compensation": True}
        if decision.kind == FAIL:  # no attempts left
            return _compensation_failed(execution, original, base, decision.error)
        if decision.kind == WAIT:  # a lost attempt's backoff
            return Outcome("wait", decision.status, countdown=decision.countdown, detail=decision.detail)
        try:
            spec, refused = compensation_spec(execution.company_id, pinned.jobs[original.node_id],
                                              worker=delivery.worker, deployment_id=execution.deployment_id), None
        except ArtifactRefused as exc:  # recorded as the attempt's (non-retryable) error, like a step's
            spec, refused = job.compensate or {}, exc.to_error()
        run = StepRun(
            execution=execution, node_id=original.node_id, shard=original.shard, shard_count=original.shard_count,
            attempt=decision.attempt, is_compensation=True, group=spec.get("group") or original.group,
            queue=delivery.queue, worker=delivery.worker, task_id=delivery.task_id, pid=delivery.pid,
            status=StepStatus.RUNNING, started_at=timezone.now(), request=delivery.request,
        )
        original.status = StepStatus.COMPENSATING
        try:
            with transaction.atomic():
                store_write(execution=execution, insert=run, update=[(original, ["status"])], events=[])
        except IntegrityError:
            return Outcome("ignore", "running", detail="claimed concurrently by another delivery")
        context = template_context(execution, Snapshot.of(execution.pk, execution.status, attempt_records(
            execution.pk, with_output=True)))
        company_id = execution.company_id
        if is_map(job.type):  # a map item's compensation sees its item, as the item did (none if mocked)
            context = item_context(context, map_item_or_none(execution.pk, original.node_id, original.shard),
                                   original.shard)
        context["compensating"] = {"node_id": original.node_id, "shard": original.shard,
                                   "input": original.input, "output": original.output}
    if refused is not None:
        return _record_compensation(execution_id, run.pk, original.pk, None, None, refused)
    rendered, output, error = run_spec(
        spec,
        context=context,
        company_id=company_id,
        execution_id=str(execution_id),
        node_id=original.node_id,
        attempt=run.attempt,
        shard=original.shard,
        shard_count=original.shard_count,
        idempotency_key=decision.idempotency_key,
        timeout_s=job.timeout_s,
        group=run.group,
    )
    return _record_compensation(execution_id, run.pk, original.pk, rendered, output, error)


def _record_of(run: StepRun) -> AttemptRecord:
    """A stored compensation attempt as the decider reads it, with its claim."""
    return AttemptRecord(run.pk, run.node_id, run.shard, run.attempt, run.status, run.worker, run.started_at,
                         is_compensation=True, task_id=run.task_id or "",
                         request_retries=int((run.request or {}).get("retries") or 0), pid=run.pid,
                         lost_counts=lost_counts(run.error))


def _record_compensation(execution_id, run_id, original_id, rendered, output, error) -> Outcome:
    with transaction.atomic():
        execution = locked_execution(execution_id)
        run = StepRun.objects.select_for_update().get(pk=run_id)
        if run.status != StepStatus.RUNNING:
            return Outcome("ignore", run.status, detail=f"attempt was marked {run.status} while it ran")
        original = StepRun.objects.select_for_update().get(pk=original_id)
        run.input, run.finished_at = rendered, timezone.now()
        base = {"node_id": run.node_id, "shard": run.shard, "attempt": run.attempt, "compensation": True}
        job = pinned_graph(execution.pk, execution.graph).graph.job(run.node_id)
        decision = settle(job, run.attempt, error, running=True, compensation=True)
        if decision.kind == DONE:
            run.status, run.output = StepStatus.SUCCEEDED, output
            original.status = StepStatus.COMPENSATED
            store_write(execution=execution, events=[(EventType.STEP_COMPENSATED, {**base, "output": output})],
                        update=[(run, ["input", "finished_at", "status", "output"]), (original, ["status"])],
                        completes=run)
            return Outcome("done", StepStatus.COMPENSATED)
        run.status, run.error = StepStatus.FAILED, error
        fields = ["input", "finished_at", "status", "error"]
        if decision.kind == RETRY:
            store_write(execution=execution, update=[(run, fields)], events=[(
                EventType.STEP_RETRYING, {**base, "error": error, "countdown_s": round(decision.countdown, 3)})])
            return Outcome("retry", StepStatus.FAILED, countdown=decision.countdown, detail=error["message"])
        return _compensation_failed(execution, original, base, error, failed=(run, fields))


def _compensation_failed(execution: Execution, original: StepRun, base: dict, error: dict,
                         failed: tuple[StepRun, list[str]] | None = None) -> Outcome:
    """The saga fails: the step stays compensation_failed and so does the run."""
    original.status = StepStatus.COMPENSATION_FAILED
    execution.status = ExecutionStatus.COMPENSATION_FAILED
    execution.finished_at = timezone.now()
    store_write(execution=execution, events=[(EventType.SAGA_COMPENSATION_FAILED, {**base, "error": error})],
                update=[*([failed] if failed else []), (original, ["status"])],
                execution_fields=["status", "finished_at"])
    return Outcome("fail", StepStatus.COMPENSATION_FAILED, detail=error["message"])


def saga_finish(*, execution_id, delivery: Delivery) -> Outcome:
    """End of the compensation chain: compensated, or failed when there was nothing to undo; a
    cancelled run's saga (`cancel.py`) ends cancelled either way."""
    with transaction.atomic():
        execution = locked_execution(execution_id)
        if execution.status != ExecutionStatus.COMPENSATING:
            return Outcome("ignore", execution.status, detail=f"execution is {execution.status}")
        done = list(
            execution.step_runs.filter(is_compensation=True, status=StepStatus.SUCCEEDED)
            .order_by("completed_seq").values_list("node_id", "shard")
        )
        if was_cancelled(execution):
            execution.status = ExecutionStatus.CANCELLED
        else:
            execution.status = ExecutionStatus.COMPENSATED if done else ExecutionStatus.FAILED
        execution.finished_at = timezone.now()
        store_write(execution=execution, events=[(EventType.SAGA_COMPENSATED, {
            "compensated": [{"node_id": n, "shard": s} for n, s in done]})], execution_fields=["status", "finished_at"])
        return Outcome("done", execution.status)
