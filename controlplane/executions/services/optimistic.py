"""Side-effect-free steps without the execution lock: read, run, write if nothing changed.

The locked path (`steps.step_execute`) holds the run's row from claim to commit: five statements a
step (BEGIN, lock, attempts, write, COMMIT; the canvas's last task two more to finish the run), and
on this kind of machine each costs about as much as the step. On PostgreSQL a side-effect-free
step (noop, log, jq, condition, fail) takes two instead, both outside any transaction (and once
per process and run a read of the run's unchanging fields and graph):

1. read the run's status and event sequence and the attempts the claim decides on (one
   statement, so one snapshot);
2. decide and run the step exactly as the locked path would, then write the attempt and its
   events (for the canvas's last task, also the run's success, if no other node is pending) in
   one statement that applies only if the sequence is still the one read.

Every change to a run's step runs or status appends an event (`store_write`, the only writer,
refuses a change without one), so an unchanged sequence proves the read still holds, and the
write is the one the locked path would have made: both ask the same decider
(`pipelines.engine.decide`) over the same rows.
When the sequence moved (a concurrent step of the same run, a duplicate, a cancel), nothing was
written and the step takes the locked path, which runs it again (it has no side effects).
Anything but a plain success (or a repeat of one) takes the locked path too - waits, skips,
failures, running attempts, a last task with nodes still pending - so each of those rules lives
in one place.
"""
from __future__ import annotations

import logging

from django.db import connection
from django.utils import timezone

from controlplane.executions.models import EventType, Execution, ExecutionStatus, StepStatus
from controlplane.executions.services.attempts import (
    Delivery,
    Outcome,
    needs_upstream_outputs,
    new_attempt,
    run_attempt,
    runs_in_transaction,
    started_data,
)
from controlplane.executions.services.state import (
    PinnedGraph,
    cached_pinned_graph,
    claim_reads,
    remember_run,
    template_context,
)
from controlplane.executions.store import execution_row, is_postgresql, run_progress, store_write, succeeded_event
from pipelines.engine import FINISH, IGNORE, RUN, AttemptRecord, DeliveryFacts, Snapshot, decide, decide_finish
from pipelines.engine.decider import RECORDED

logger = logging.getLogger(__name__)


def step_execute_unlocked(*, execution_id, node_id: str, shard: int, shard_count: int, delivery: Delivery,
                          final: bool = False) -> Outcome | None:
    """The step's outcome if it could be decided and recorded without the lock; None when it
    must take the locked path (nothing was written then). `final`: the canvas's last task, which
    also finishes the run when every other node is recorded (in the same statement)."""
    if not is_postgresql() or connection.in_atomic_block:
        return None
    pinned = _pinned_run(execution_id)
    if pinned is None or node_id not in pinned.jobs or not runs_in_transaction(pinned.jobs[node_id]):
        return None
    job = pinned.jobs[node_id]
    reads = claim_reads(pinned, node_id, with_outputs=needs_upstream_outputs(job))
    # The last task decides on every node: the run finishes only if none is pending.
    progress = run_progress(execution_id, with_output=reads.with_output, node_ids=None if final else reads.node_ids)
    if progress is None or progress[0] != ExecutionStatus.RUNNING:
        return None
    status, event_seq, rows = progress
    # The read has no claim details (task, try, process): a running attempt makes the decision
    # `defer`, and the locked path, which reads them, decides instead.
    snapshot = Snapshot.of(execution_id, status, [AttemptRecord(*row) for row in rows])
    decision = decide(pinned.graph, node_id, shard, snapshot, DeliveryFacts(task_id=delivery.task_id,
                      retries=delivery.retries), timezone.now())
    if decision.kind == IGNORE and decision.reason == RECORDED and not final:
        return Outcome("done", decision.status, detail=decision.detail)
    if decision.kind != RUN or decision.lose is not None:
        return None  # waits, skips, dead letters, losses: the locked path writes those
    mine = snapshot.of_shard(node_id, shard)
    execution = Execution(id=execution_id, graph=pinned.raw, status=status, event_seq=event_seq, **pinned.facts)
    run = new_attempt(execution, job, shard, shard_count, mine, delivery, deferred=True)
    context = template_context(execution, snapshot, with_steps=reads.with_outputs)
    rendered, output, error = run_attempt(execution.company_id, run, job, context)
    if error is not None:
        return None
    run.input, run.output, run.status, run.finished_at = rendered, output, StepStatus.SUCCEEDED, timezone.now()
    base = {"node_id": node_id, "shard": shard, "attempt": run.attempt}
    events = [(EventType.STEP_STARTED, started_data(run)), (EventType.STEP_COMPLETED, {**base, "output": output})]
    update_fields: tuple[str, ...] = ()
    if final:
        attempts = {**snapshot.attempts, (node_id, shard): (*mine, AttemptRecord(0, node_id, shard, run.attempt,
                                                                                  run.status))}
        finish = decide_finish(pinned.graph, Snapshot(snapshot.execution_id, status, attempts), DeliveryFacts())
        if finish.kind != FINISH:
            return None  # a duplicate fired the last task early: the locked path waits for the rest
        events.append(succeeded_event(execution, finish.skipped))
        update_fields = ("status", "finished_at")
    written = store_write(execution=execution, insert=run, events=events, completes=run, completion=1,
                          execution_fields=update_fields, expect_seq=event_seq)
    if written is None:
        logger.debug("step.unlocked_write_conflict", extra={"execution_id": str(execution_id), "node_id": node_id,
                                                             "shard": shard})
        return None
    if final:
        return Outcome("done", ExecutionStatus.SUCCEEDED, detail=f"{StepStatus.SUCCEEDED}; run finished")
    return Outcome("done", StepStatus.SUCCEEDED)


def _pinned_run(execution_id) -> PinnedGraph | None:
    """The run's pinned graph and unchanging fields: cached, or read once (without a lock: they
    never change) and cached; None if there is no such run."""
    pinned = cached_pinned_graph(execution_id)
    if pinned is not None and pinned.facts is not None:
        return pinned
    try:
        return remember_run(execution_row(execution_id, with_graph=True))
    except Execution.DoesNotExist:
        return None
