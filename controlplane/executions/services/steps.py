"""Running the canvas: claim-before-work steps, merges, barriers and the finish.

Every task of a canvas may be delivered more than once (late ack, redelivery, a chord body
fired twice on Redis, a lost step re-published). So each service decides from PostgreSQL alone:

- the execution is not running (failed, compensating, cancelled) -> ignore, act on nothing;
- the shard already succeeded or was skipped -> report that status again, act on nothing;
- an attempt of the shard is running -> a duplicate delivery -> ignore (unless this delivery is
  a retry of the task that claimed it: that try is over, so its attempt is lost and the next one
  is claimed);
- a predecessor has not completed -> wait (retry with a short countdown, bounded);
- all incoming edges are dead -> record the shard skipped;
- otherwise claim attempt max+1 (the unique constraint settles a race), run, record.
"""
from __future__ import annotations

import logging
import time
from typing import Any

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

from controlplane.executions.models import (
    DeadLetter,
    EventType,
    Execution,
    ExecutionStatus,
    StepRun,
    StepStatus,
)
from controlplane.executions.services.attempts import (
    MAX_WAITS,
    Delivery,
    Outcome,
    attempt_expired,
    mark_lost,
    needs_upstream_outputs,
    new_attempt,
    process_gone,
    run_attempt,
    runs_in_transaction,
    started_data,
    step_idempotency_key,
    wait_countdown,
)
from controlplane.executions.services.events import (
    event_append,
    events_append,
    events_append_with_run,
    locked_execution,
)
from controlplane.executions.services.optimistic import step_execute_unlocked
from controlplane.executions.services.state import (
    PENDING,
    claim_reads,
    is_dead,
    load_runs,
    node_state,
    pending_nodes,
    pinned_graph,
    shard_state,
    succeed,
    template_context,
    waiting_on,
)
from pipelines.graph import RetryPolicy

logger = logging.getLogger(__name__)


def step_execute(
    *, execution_id, node_id: str, shard: int, shard_count: int, delivery: Delivery, final: bool = False
) -> Outcome:
    """Claim, run and record one attempt of one shard of a node.

    A side-effect-free step (noop, log, jq, condition, fail) runs inside the transaction that
    claims and records it: one lock, one commit, and a crash rolls everything back, leaving the
    shard to the next delivery. Any other step is claimed and committed first (so duplicates and
    a dead worker are visible while it runs), run outside any transaction, then recorded.

    On PostgreSQL, a side-effect-free step first tries the unlocked path (`optimistic`): the same
    decision and write in two statements instead of five (seven for the canvas's last task).

    `final` marks the canvas's last task: it runs after every other one, so once it is done it
    also finishes the run (see `finish_after`), sparing a Celery hop per execution.
    """
    outcome = step_execute_unlocked(execution_id=execution_id, node_id=node_id, shard=shard,
                                    shard_count=shard_count, delivery=delivery, final=final)
    if outcome is not None:
        return outcome
    with transaction.atomic():
        claim = _claim_locked(execution_id, node_id, shard, shard_count, delivery)
        if isinstance(claim, Outcome):
            return finish_after(claim, execution_id, delivery, final=final)
        execution, run, job, context = claim
        if run.pk is None:  # side-effect-free: run and record inside the claim's transaction
            rendered, output, error = run_attempt(execution.company_id, run, job, context)
            outcome = _record_locked(execution, run, job, rendered, output, error, context)
            return finish_after(outcome, execution_id, delivery, final=final, locked=execution)
    # Claimed and committed: the step runs outside any transaction, then its result is recorded.
    rendered, output, error = _run_claimed(execution.company_id, run, job, context)
    outcome = _until_recorded(lambda: _record_step(execution_id, run.pk, job, rendered, output, error, context,
                                                   delivery), execution_id=execution_id, node_id=node_id)
    return finish_after(outcome, execution_id, delivery, final=final)


def _run_claimed(company_id: int, run: StepRun, job, context):
    """Run a claimed, committed attempt. The engine reads PostgreSQL while a step runs (the egress
    allow-list when it connects, its secrets): if such a read broke the connection, the attempt's
    error is the database's, not the step's, and however the step type wrapped it, it must not
    fail the attempt for good. The database error is raised instead: the task retries (as for any
    lost connection) and its retry takes this attempt over, with the same idempotency key.

    Django flags a connection on which an error that may have broken it was raised
    (`errors_occurred`, what `close_if_unusable_or_obsolete` reads); the claim just succeeded on
    this connection, so a flag raised now was raised under the step. Only a connection that is
    broken counts: an error on a healthy one (a missing table) would fail every retry the same."""
    flagged_before = connection.errors_occurred
    rendered, output, error = run_attempt(company_id, run, job, context)
    if error is not None and not flagged_before and connection.errors_occurred and not _connection_usable():
        logger.warning("step.database_failed_under_step", extra={
            "execution_id": str(run.execution_id), "step": run.node_id, "error": error.get("message")})
        raise OperationalError(f"the database failed while step {run.node_id!r} ran: {error.get('message')}")
    return rendered, output, error


def _connection_usable() -> bool:
    return connection.connection is not None and connection.is_usable()


def _until_recorded(record, *, execution_id, node_id: str):
    """Record a finished step's outcome, retrying the recording (not the step) while the database
    is away: a completed HTTP call must not be sent again because PostgreSQL restarted after it.
    Past RECORD_RETRY_FOR_S the error propagates and the task's own retry runs the step again,
    with the same idempotency key."""
    deadline = time.monotonic() + float(settings.RECORD_RETRY_FOR_S)
    delay = 0.2
    while True:
        try:
            return record()
        except (InterfaceError, OperationalError):
            if connection.in_atomic_block or time.monotonic() + delay > deadline:
                raise
            logger.warning("step.record_retrying", extra={"execution_id": str(execution_id), "step": node_id,
                                                         "delay_s": delay})
            connection.close()  # broken: the next query opens a new one
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def finish_after(
    outcome: Outcome, execution_id, delivery: Delivery, *, final: bool, locked: Execution | None = None
) -> Outcome:
    """After the canvas's last task is done, finish the run in the same transaction (or a new one).

    `locked`: the execution as the caller's transaction already holds it locked. If some node is
    somehow still pending (a duplicate fired the last task early), the stand-alone
    `flowplane.finish` task is published to wait for it, as before.
    """
    if not final or outcome.action != "done":
        return outcome
    with transaction.atomic(savepoint=False):  # joins the caller's transaction when there is one
        execution = locked if locked is not None else locked_execution(execution_id)
        if execution.status != ExecutionStatus.RUNNING:
            return outcome
        if not _finish_locked(execution):
            queue = delivery.queue
            transaction.on_commit(lambda: _dispatch_finish(execution_id, queue))
            return outcome
    return Outcome("done", ExecutionStatus.SUCCEEDED, detail=f"{outcome.status}; run finished")


def _dispatch_finish(execution_id, queue: str) -> None:
    from controlplane.executions.dispatch import finish_signature  # dispatch imports the services: at call time

    finish_signature(str(execution_id), queue).apply_async()


def _claim_locked(execution_id, node_id, shard, shard_count, delivery: Delivery, *, deferred: bool | None = None):
    """Claim under the execution lock. A step run inside this transaction (`deferred`; by default
    a side-effect-free one) gets its attempt row and `step.started` event written once, with its
    result, by the record: the returned run is then unsaved (`run.pk is None`)."""
    # Every claimer of this execution takes the row lock first, so no two transactions can pick
    # the same attempt number; the unique constraint stays as the backstop.
    execution = locked_execution(execution_id)
    if execution.status != ExecutionStatus.RUNNING:
        return Outcome("ignore", execution.status, detail=f"execution is {execution.status}")
    job = execution.job(node_id)
    reads = claim_reads(pinned_graph(execution.pk, execution.graph), node_id, with_outputs=needs_upstream_outputs(job))
    by_shard = load_runs(execution.pk, with_output=reads.with_output, node_ids=reads.node_ids)
    mine = by_shard.get((node_id, shard), [])
    state = shard_state(mine)
    if state != PENDING:
        return Outcome("done", state, detail="already recorded; not run again")
    running = [run for run in mine if run.status == StepStatus.RUNNING]
    lost = sum(1 for run in mine if run.status == StepStatus.LOST)
    if running:
        current = StepRun.objects.defer("input", "output", "error").get(pk=running[-1].id)
        if _retried_by(current, delivery):
            mark_lost(execution, current, reason="the try that ran it ended without recording a result "
                      "(its database connection was lost); this retry of the same task runs it again")
        elif process_gone(current, delivery):
            mark_lost(execution, current, reason=f"the process (pid {current.pid}) that ran it on "
                      f"{current.worker} died; Celery delivered the task again")
        elif attempt_expired(current, job):
            mark_lost(execution, current, reason="attempt ran past its hard time limit")
        else:
            return Outcome("ignore", "running", detail=f"duplicate delivery: attempt {current.attempt} "
                           f"is running on {current.worker}")
        lost += 1
    if lost >= int(settings.STEP_MAX_LOST_ATTEMPTS):
        # Lost attempts are retried whatever the node's retry policy (a worker dying is not the
        # step's failure), but a step whose process dies every time (out of memory, a crash in C)
        # would take its group's workers down for ever: it fails for good instead.
        run = new_attempt(execution, job, shard, shard_count, mine, delivery, deferred=True)
        error = {"message": f"attempt lost {lost} times: the process running it died each time (out of memory? "
                            "a crash?); not tried again", "retryable": False,
                 "details": {"reason": "lost_repeatedly", "lost": lost}}
        return _record_locked(execution, run, job, None, None, error, {})
    waiting = waiting_on(execution, node_id, by_shard)
    if waiting:
        return _wait_or_give_up(execution, delivery, f"predecessors {waiting} have not completed")
    if deferred is None:
        deferred = runs_in_transaction(job)
    run = new_attempt(execution, job, shard, shard_count, mine, delivery, deferred=deferred)
    if is_dead(execution, node_id, by_shard):
        run.status, run.finished_at, run.request = StepStatus.SKIPPED, run.started_at, delivery.request
        events_append_with_run(execution=execution, run=run, completed=False, events=[(
            EventType.STEP_SKIPPED, {"node_id": node_id, "shard": shard, "reason": "all incoming edges are dead"})])
        return Outcome("done", StepStatus.SKIPPED)
    if not deferred:
        events_append_with_run(execution=execution, run=run, events=[(EventType.STEP_STARTED, started_data(run))],
                               completed=False)
    return execution, run, job, template_context(execution, by_shard, with_steps=reads.with_outputs)


def _retried_by(run: StepRun, delivery: Delivery) -> bool:
    """Whether `delivery` is a later try of the very task that claimed the running `run`: Celery
    acked that try when it published the retry, so nothing is running the attempt any more."""
    if not delivery.task_id or run.task_id != delivery.task_id:
        return False
    return delivery.retries > int((run.request or {}).get("retries") or 0)


def _record_step(execution_id, run_id, job, rendered, output, error, context, delivery: Delivery) -> Outcome:
    """Record an attempt that ran outside a transaction."""
    with transaction.atomic():
        execution = locked_execution(execution_id)
        # The execution lock covers the run: every writer of its step runs holds it.
        run = StepRun.objects.defer("request", "input", "output", "error").get(pk=run_id)
        return _record_locked(execution, run, job, rendered, output, error, context)


def _record_locked(execution: Execution, run: StepRun, job, rendered, output, error, context) -> Outcome:
    """Record an attempt's result; the caller holds the execution lock."""
    if run.status != StepStatus.RUNNING:
        # Marked lost while it ran (its worker looked dead): the re-published delivery owns the
        # shard now and presents the same idempotency key, so this result is dropped.
        return Outcome("ignore", run.status, detail=f"attempt was marked {run.status} while it ran")
    run.input = rendered
    run.finished_at = timezone.now()
    base = {"node_id": run.node_id, "shard": run.shard, "attempt": run.attempt}
    unsaved = run.pk is None  # claimed in this transaction: row and `step.started` still to write
    if error is None:
        run.status, run.output = StepStatus.SUCCEEDED, output
        completed = (EventType.STEP_COMPLETED, {**base, "output": output})
        if unsaved:
            events_append_with_run(execution=execution, run=run, completed=True,
                                   events=[(EventType.STEP_STARTED, started_data(run)), completed])
        else:
            run.completed_seq = events_append(execution=execution, events=[completed])[-1].seq
            run.save(update_fields=["input", "finished_at", "status", "output", "completed_seq"])
        return Outcome("done", StepStatus.SUCCEEDED)
    run.status, run.error = StepStatus.FAILED, error
    if unsaved:
        events_append_with_run(execution=execution, run=run, events=[(EventType.STEP_STARTED, started_data(run))],
                               completed=False)
    else:
        run.save(update_fields=["input", "finished_at", "status", "error"])
    policy = RetryPolicy(**job["retry"])
    if error.get("retryable") and policy.should_retry(run.attempt) and execution.status == ExecutionStatus.RUNNING:
        countdown = policy.delay_for(run.attempt)
        event_append(execution=execution, type=EventType.STEP_RETRYING,
                     data={**base, "error": error, "countdown_s": round(countdown, 3)})
        return Outcome("retry", StepStatus.FAILED, countdown=countdown, detail=error["message"])
    event_append(execution=execution, type=EventType.STEP_FAILED, data={**base, "error": error})
    letter = DeadLetter.objects.create(
        execution=execution, step_run=run, node_id=run.node_id, shard=run.shard, attempts=run.attempt,
        error=error,
        payload={
            "job": job, "input": rendered, "context": context, "queue": run.queue, "group": run.group,
            "shard_count": run.shard_count,
            "idempotency_key": step_idempotency_key(execution.pk, run.node_id, run.shard),
        },
    )
    event_append(execution=execution, type=EventType.STEP_DEAD_LETTERED, data={**base, "dead_letter": letter.pk})
    fail_execution(execution, error={**base, "error": error}, saga_queue=run.queue)
    return Outcome("fail", StepStatus.FAILED, detail=error["message"])


def fail_execution(execution: Execution, *, error: dict[str, Any], saga_queue: str) -> bool:
    """running -> compensating, once: the caller holds the row lock, so only the first failing
    branch wins; it appends `execution.failed` and, after commit, publishes the saga."""
    if execution.status != ExecutionStatus.RUNNING:
        return False
    execution.status = ExecutionStatus.COMPENSATING
    execution.error = error
    event_append(execution=execution, type=EventType.EXECUTION_FAILED, data={"error": error},
                 update_fields=["status", "error"])
    execution_id = execution.pk
    transaction.on_commit(lambda: _dispatch_saga(execution_id, saga_queue))
    return True


def _dispatch_saga(execution_id, queue: str) -> None:
    from controlplane.executions.dispatch import saga_signature  # dispatch imports the services: at call time

    saga_signature(str(execution_id), queue).apply_async()


def _wait_or_give_up(execution: Execution, delivery: Delivery, reason: str) -> Outcome:
    if delivery.retries < MAX_WAITS:
        return Outcome("wait", "waiting", countdown=wait_countdown(delivery.retries), detail=reason)
    logger.error("execution.gave_up_waiting", extra={"execution_id": str(execution.pk), "reason": reason})
    fail_execution(execution, error={"message": f"gave up waiting: {reason}"}, saga_queue=delivery.queue)
    return Outcome("fail", "failed", detail=reason)


def merge_execute(*, execution_id, node_id: str, shards: int, delivery: Delivery, final: bool = False) -> Outcome:
    """The join of a replicated node: complete once every shard is recorded (outputs stay in the
    store; `.steps.<id>.output` is the list of shard outputs by index)."""
    with transaction.atomic():
        execution = locked_execution(execution_id)
        if execution.status != ExecutionStatus.RUNNING:
            return Outcome("ignore", execution.status, detail=f"execution is {execution.status}")
        by_shard = load_runs(execution.pk, with_output=False)
        state = node_state(execution.job(node_id), by_shard)
        if state == PENDING:
            return _wait_or_give_up(execution, delivery, f"shards of {node_id!r} have not completed")
        return finish_after(Outcome("done", state), execution_id, delivery, final=final)


def barrier_execute(*, execution_id, label: str, delivery: Delivery, final: bool = False) -> Outcome:
    """A chord body with no node of its own: passes while the run is running."""
    status = Execution.objects.filter(pk=execution_id).values_list("status", flat=True).first()
    if status != ExecutionStatus.RUNNING:
        return Outcome("ignore", status or "missing", detail=f"execution is {status}")
    return finish_after(Outcome("done", "passed", detail=label), execution_id, delivery, final=final)


def execution_finish(*, execution_id, delivery: Delivery) -> Outcome:
    """The end of the canvas: succeeded once every node is recorded succeeded or skipped."""
    with transaction.atomic():
        execution = locked_execution(execution_id)
        if execution.status == ExecutionStatus.SUCCEEDED:
            return Outcome("done", execution.status, detail="already finished")
        if execution.status != ExecutionStatus.RUNNING:
            return Outcome("ignore", execution.status, detail=f"execution is {execution.status}")
        if not _finish_locked(execution):
            pending = pending_nodes(execution, load_runs(execution.pk, with_output=False))
            return _wait_or_give_up(execution, delivery, f"nodes {pending} have not completed")
        return Outcome("done", execution.status)


def _finish_locked(execution: Execution) -> bool:
    """running -> succeeded when every node is recorded succeeded or skipped; False otherwise."""
    by_shard = load_runs(execution.pk, with_output=False)
    if pending_nodes(execution, by_shard):
        return False
    type, data = succeed(execution, by_shard)
    event_append(execution=execution, type=type, data=data, update_fields=["status", "finished_at"])
    return True
