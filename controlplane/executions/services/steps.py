"""Running the canvas: claim-before-work steps, merges, barriers and the finish.

Every task of a canvas may be delivered more than once (late ack, redelivery, a chord body
fired twice on Redis, a lost step re-published). So each service reads the run from PostgreSQL
under its row lock, asks the engine's decider (`pipelines.engine.decide`: run, skip, wait,
dead-letter, fail, ignore; `settle` for a finished attempt: done, retry, dead-letter;
`decide_finish`), and writes what it says through the store. The rules are the decider's; what
stays here is I/O: the reads, the facts only this process can know (is the claiming process
gone?), running the step, and the writes.
"""
from __future__ import annotations

import logging
import time
from dataclasses import replace
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
    Delivery,
    Outcome,
    lost_counts,
    mark_lost,
    needs_upstream_outputs,
    new_attempt,
    process_gone,
    run_attempt,
    runs_in_transaction,
    started_data,
    step_idempotency_key,
)
from controlplane.executions.services.events import was_cancelled
from controlplane.executions.services.map_gate import empty_map_join
from controlplane.executions.services.optimistic import step_execute_unlocked
from controlplane.executions.services.start import execution_queues
from controlplane.executions.services.segments import has_gates, segment_advance_locked, segment_pending_nodes
from controlplane.executions.services.state import claim_reads, pinned_graph, template_context
from controlplane.executions.store import attempt_records, locked_execution, store_write, succeeded_event
from pipelines.engine import (
    DEAD_LETTER,
    DONE,
    FAIL,
    FINISH,
    IGNORE,
    RETRY,
    SKIP,
    WAIT,
    AttemptRecord,
    DeliveryFacts,
    Snapshot,
    decide,
    decide_finish,
    settle,
)
from pipelines.engine.decider import RECORDED, wait_or_give_up
from pipelines.engine.fanout import is_map
from pipelines.engine.history import PENDING, node_state

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
        if has_gates(execution):  # the last task of a segment: open the next one (or finish)
            detail = segment_advance_locked(execution, delivery=delivery)
            return Outcome("done", outcome.status, detail=f"{outcome.status}; {detail}")
        if finish_locked(execution, delivery).kind != FINISH:
            dispatch_finish_after_commit(execution_id, delivery.queue)
            return outcome
    return Outcome("done", ExecutionStatus.SUCCEEDED, detail=f"{outcome.status}; run finished")


def dispatch_finish_after_commit(execution_id, queue: str) -> None:
    """After commit, the stand-alone finish, which waits (bounded) for what is still pending."""
    transaction.on_commit(lambda: _dispatch_finish(execution_id, queue))


def _dispatch_finish(execution_id, queue: str) -> None:
    from controlplane.executions.dispatch import finish_signature, publish  # dispatch imports the services

    publish(execution_id, finish_signature(str(execution_id), queue))


def _claim_locked(execution_id, node_id, shard, shard_count, delivery: Delivery, *, deferred: bool | None = None):
    """Claim under the execution lock: read, `decide`, write what it says. A step run inside this
    transaction (`deferred`; by default a side-effect-free one) gets its attempt row and
    `step.started` event written once, with its result, by the record: the returned run is then
    unsaved (`run.pk is None`)."""
    # Every claimer of this execution takes the row lock first, so no two transactions can pick
    # the same attempt number; the unique constraint stays as the backstop.
    execution = locked_execution(execution_id)
    if execution.status != ExecutionStatus.RUNNING:
        return Outcome("ignore", execution.status, detail=f"execution is {execution.status}")
    pinned = pinned_graph(execution.pk, execution.graph)
    job = pinned.jobs[node_id]
    reads = claim_reads(pinned, node_id, with_outputs=needs_upstream_outputs(job))
    snapshot, stored, facts = _claim_snapshot(execution, node_id, shard, reads, delivery)
    decision = decide(pinned.graph, node_id, shard, snapshot, facts, timezone.now())
    if decision.kind == IGNORE:
        action = "done" if decision.reason == RECORDED else "ignore"
        return Outcome(action, decision.status, detail=decision.detail)
    if decision.lose is not None:
        mark_lost(execution, stored[decision.lose.record.id], reason=decision.lose.reason,
                  counts=decision.lose.counts, retry_in_s=decision.countdown if decision.kind == WAIT else None)
    if decision.kind == WAIT:
        return Outcome("wait", decision.status, countdown=decision.countdown, detail=decision.detail)
    if decision.kind == FAIL:
        logger.error("execution.gave_up_waiting", extra={"execution_id": str(execution.pk), "reason": decision.detail})
        fail_execution(execution, error=decision.error, saga_queue=delivery.queue)
        return Outcome("fail", decision.status, detail=decision.detail)
    mine = snapshot.of_shard(node_id, shard)
    if decision.kind == DEAD_LETTER:  # no attempts left: the give-up is recorded as a failed attempt
        run = new_attempt(execution, job, shard, shard_count, mine, delivery, deferred=True)
        return _record_locked(execution, run, job, None, None, decision.error, {})
    if deferred is None:
        deferred = runs_in_transaction(job)
    run = new_attempt(execution, job, shard, shard_count, mine, delivery, deferred=deferred)
    if decision.kind == SKIP:
        run.status, run.finished_at, run.request = StepStatus.SKIPPED, run.started_at, delivery.request
        store_write(execution=execution, insert=run, events=[(
            EventType.STEP_SKIPPED, {"node_id": node_id, "shard": shard, "reason": decision.detail})])
        return Outcome("done", StepStatus.SKIPPED)
    if not deferred:
        store_write(execution=execution, insert=run, events=[(EventType.STEP_STARTED, started_data(run))])
    return execution, run, job, template_context(execution, snapshot, with_steps=reads.with_outputs)


def _claim_snapshot(execution: Execution, node_id: str, shard: int, reads, delivery: Delivery):
    """(snapshot, the shard's stored attempts by id, facts) for a locked claim.

    One query for the attempts a claim decides on; only when the shard has a running or lost
    attempt (a redelivery, rare) a second one for what those need: the running attempt's claim
    (task, try, process: is it over?) and whether each lost one counts against max_attempts.
    """
    records = attempt_records(execution.pk, with_output=reads.with_output, node_ids=reads.node_ids)
    stored: dict[int, StepRun] = {}
    claimer_gone = False
    if any(r.node_id == node_id and r.shard == shard and r.status in _NEEDS_DETAIL for r in records):
        runs = StepRun.objects.defer("input", "output").filter(
            execution_id=execution.pk, node_id=node_id, shard=shard, is_compensation=False).order_by("id")
        stored = {run.pk: run for run in runs}
        records = [_detailed(record, stored[record.id]) if record.id in stored else record for record in records]
        running = [run for run in stored.values() if run.status == StepStatus.RUNNING]
        claimer_gone = bool(running) and process_gone(running[-1], delivery)
    facts = DeliveryFacts(task_id=delivery.task_id, retries=delivery.retries, claimer_gone=claimer_gone,
                          max_uncounted_lost=int(settings.STEP_MAX_LOST_ATTEMPTS))
    return Snapshot.of(execution.pk, execution.status, records), stored, facts


_NEEDS_DETAIL = frozenset({StepStatus.RUNNING, StepStatus.LOST})


def _detailed(record: AttemptRecord, run: StepRun) -> AttemptRecord:
    return replace(record, task_id=run.task_id or "", request_retries=int((run.request or {}).get("retries") or 0),
                   pid=run.pid, lost_counts=lost_counts(run.error))


def _record_step(execution_id, run_id, job, rendered, output, error, context, delivery: Delivery) -> Outcome:
    """Record an attempt that ran outside a transaction."""
    with transaction.atomic():
        execution = locked_execution(execution_id)
        # The execution lock covers the run: every writer of its step runs holds it.
        run = StepRun.objects.defer("request", "input", "output", "error").get(pk=run_id)
        return _record_locked(execution, run, job, rendered, output, error, context)


def _record_locked(execution: Execution, run: StepRun, job, rendered, output, error, context) -> Outcome:
    """Record an attempt's result as `settle` decides; the caller holds the execution lock."""
    if run.status != StepStatus.RUNNING:
        # Marked lost while it ran (its worker looked dead): the re-published delivery owns the
        # shard now and presents the same idempotency key, so this result is dropped.
        return Outcome("ignore", run.status, detail=f"attempt was marked {run.status} while it ran")
    run.input = rendered
    run.finished_at = timezone.now()
    base = {"node_id": run.node_id, "shard": run.shard, "attempt": run.attempt}
    unsaved = run.pk is None  # claimed in this transaction: row and `step.started` still to write
    started = [(EventType.STEP_STARTED, started_data(run))] if unsaved else []
    graph = pinned_graph(execution.pk, execution.graph).graph
    decision = settle(graph.job(run.node_id), run.attempt, error, running=execution.status == ExecutionStatus.RUNNING)
    if decision.kind == DONE:
        run.status, run.output = StepStatus.SUCCEEDED, output
        completed = (EventType.STEP_COMPLETED, {**base, "output": output})
        _write_attempt(execution, run, [*started, completed], ["input", "finished_at", "status", "output"],
                       completes=True)
        return Outcome("done", StepStatus.SUCCEEDED)
    run.status, run.error = StepStatus.FAILED, error
    fields = ["input", "finished_at", "status", "error"]
    if decision.kind == RETRY:
        retrying = (EventType.STEP_RETRYING, {**base, "error": error, "countdown_s": round(decision.countdown, 3)})
        _write_attempt(execution, run, [*started, retrying], fields)
        return Outcome("retry", StepStatus.FAILED, countdown=decision.countdown, detail=error["message"])
    _write_attempt(execution, run, [*started, (EventType.STEP_FAILED, {**base, "error": error})], fields)
    if was_cancelled(execution):
        # A step that was still running when its run was cancelled: recorded, but nothing to
        # replay, and the run's outcome is the cancel's.
        return Outcome("fail", StepStatus.FAILED, detail=error["message"])
    letter = DeadLetter.objects.create(
        execution=execution, step_run=run, node_id=run.node_id, shard=run.shard, attempts=run.attempt,
        error=error,
        payload={
            "job": job, "input": rendered, "context": context, "queue": run.queue, "group": run.group,
            "shard_count": run.shard_count,
            "idempotency_key": step_idempotency_key(execution.pk, run.node_id, run.shard),
        },
    )
    store_write(execution=execution, events=[(EventType.STEP_DEAD_LETTERED, {**base, "dead_letter": letter.pk})])
    fail_execution(execution, error={**base, "error": error}, saga_queue=run.queue)
    return Outcome("fail", StepStatus.FAILED, detail=error["message"])


def gate_attempt_record(execution: Execution, job: dict[str, Any], *, rendered: Any = None, output: Any = None,
                        error: dict[str, Any] | None = None, worker: str = "", started_at=None) -> Outcome:
    """Record the outcome of a gate that no task ran (an approval decided by a person), as a step
    attempt recorded the usual way (`_record_locked`): `error` None -> succeeded with `output`
    (downstream templates read `.steps.<id>.output`); a non-retryable `error` -> failed,
    dead-lettered, and the run goes to the saga (also from `waiting`). `worker`: who decided
    (shown where the worker of a step would be); `started_at`: when the gate began waiting, so the
    attempt's duration is the wait. The caller holds the execution lock."""
    previous = list(StepRun.objects.filter(execution_id=execution.pk, node_id=job["id"], shard=0,
                                           is_compensation=False).only("attempt"))
    delivery = Delivery(worker=worker[:255], queue=execution_queues(execution)[job["group"]])
    run = new_attempt(execution, job, 0, 1, previous, delivery, deferred=True)
    run.started_at = started_at or run.started_at
    if error is not None:
        error = {**error, "retryable": False}
    return _record_locked(execution, run, job, rendered, output, error, {})


def _write_attempt(execution: Execution, run: StepRun, events, fields: list[str], *, completes: bool = False) -> None:
    """Insert the attempt claimed in this transaction, or save the fields of a stored one, with its events."""
    if run.pk is None:
        store_write(execution=execution, insert=run, events=events, completes=run if completes else None)
    else:
        store_write(execution=execution, update=[(run, fields)], events=events, completes=run if completes else None)


def fail_execution(execution: Execution, *, error: dict[str, Any], saga_queue: str) -> bool:
    """running (or waiting at a gate) -> compensating, once: the caller holds the row lock, so only the first failing
    branch wins; it appends `execution.failed` and, after commit, publishes the saga."""
    if execution.status not in (ExecutionStatus.RUNNING, ExecutionStatus.WAITING):
        return False
    execution.status = ExecutionStatus.COMPENSATING
    execution.error = error
    store_write(execution=execution, events=[(EventType.EXECUTION_FAILED, {"error": error})],
                execution_fields=["status", "error"])
    execution_id = execution.pk
    transaction.on_commit(lambda: _dispatch_saga(execution_id, saga_queue))
    return True


def _dispatch_saga(execution_id, queue: str) -> None:
    """Publish the saga of a run that is compensating (a failure's, or a cancel's)."""
    from controlplane.executions.dispatch import publish, saga_signature  # dispatch imports the services

    publish(execution_id, saga_signature(str(execution_id), queue))


def _waited(execution: Execution, delivery: Delivery, decision) -> Outcome:
    """The Outcome of a wait decision, or of giving up waiting (the run fails)."""
    if decision.kind == WAIT:
        return Outcome("wait", decision.status, countdown=decision.countdown, detail=decision.detail)
    logger.error("execution.gave_up_waiting", extra={"execution_id": str(execution.pk), "reason": decision.detail})
    fail_execution(execution, error=decision.error, saga_queue=delivery.queue)
    return Outcome("fail", decision.status, detail=decision.detail)


def merge_execute(*, execution_id, node_id: str, shards: int, delivery: Delivery, final: bool = False) -> Outcome:
    """The join of a replicated node or of a map node's items: complete once every shard is
    recorded (outputs stay in the store; `.steps.<id>.output` is the list of shard outputs by
    index). A map without items has no shard to wait for: its join records the node done with `[]`."""
    with transaction.atomic():
        execution = locked_execution(execution_id)
        if execution.status != ExecutionStatus.RUNNING:
            return Outcome("ignore", execution.status, detail=f"execution is {execution.status}")
        graph = pinned_graph(execution.pk, execution.graph).graph
        if shards == 0 and is_map(graph.job(node_id).type):
            empty_map_join(execution, node_id, delivery)
        attempts = Snapshot.of(execution.pk, execution.status, attempt_records(execution.pk, with_output=False))
        state = node_state(graph.job(node_id), attempts.attempts)
        if state == PENDING:
            return _waited(execution, delivery, wait_or_give_up(
                DeliveryFacts(retries=delivery.retries), f"shards of {node_id!r} have not completed"))
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
        if execution.status == ExecutionStatus.RUNNING and has_gates(execution):
            pending = segment_pending_nodes(execution)
            if pending:
                return _waited(execution, delivery, wait_or_give_up(
                    DeliveryFacts(retries=delivery.retries), f"nodes {pending} of the segment have not completed"))
            return Outcome("done", execution.status, detail=segment_advance_locked(execution, delivery=delivery))
        decision = finish_locked(execution, delivery)
        if decision.kind == FINISH:
            return Outcome("done", execution.status)
        if decision.kind == IGNORE:
            return Outcome("done" if decision.reason == RECORDED else "ignore", decision.status, detail=decision.detail)
        return _waited(execution, delivery, decision)


def finish_locked(execution: Execution, delivery: Delivery):
    """`decide_finish` for the locked `execution`; on FINISH it is written: running -> succeeded."""
    if execution.status not in (ExecutionStatus.RUNNING, ExecutionStatus.SUCCEEDED):
        return decide_finish(None, Snapshot.of(execution.pk, execution.status, ()), DeliveryFacts())
    graph = pinned_graph(execution.pk, execution.graph).graph
    records = attempt_records(execution.pk, with_output=False) if execution.status == ExecutionStatus.RUNNING else ()
    decision = decide_finish(graph, Snapshot.of(execution.pk, execution.status, records),
                             DeliveryFacts(retries=delivery.retries))
    if decision.kind == FINISH:
        store_write(execution=execution, events=[succeeded_event(execution, decision.skipped)],
                    execution_fields=["status", "finished_at"])
    return decision

