"""Side-effect-free steps without the execution lock: read, run, write if nothing changed.

The locked path (`steps.step_execute`) holds the run's row from claim to commit: five statements a
step (BEGIN, lock, attempts, write, COMMIT; the canvas's last task two more to finish the run), and
on this kind of machine each costs about as much as the step. On PostgreSQL a side-effect-free
step (noop, log, jq, condition, fail) takes two instead, both outside any transaction (and once
per process and run a read of the run's unchanging fields and graph):

1. read the run's status and event sequence and the attempts the claim decides on (one
   statement, so one snapshot);
2. decide and run the step exactly as the locked path would, then write the attempt and its
   events in one statement that applies only if the read still holds.

What "still holds" takes depends on the task. The canvas's last task also records the run's
success when no other node is pending, a decision over every node: its write applies only if
the run's event sequence is still the one read. Every change to a run's step runs or status
appends an event (`store_write`, the only writer, refuses a change without one), so an
unchanged sequence proves nothing moved.

Any other step decides on three things only, and the write checks each without asking that
nothing else happened in the run: the run is running (the statement's condition); the shard has
no attempt beyond those read (the attempt number is the next one, and the unique attempt
constraint refuses a second writer of it); and its predecessors completed, with the outputs it
read (recorded completions never change while the run is running: only a compensation, after
the run left `running`, touches them). So a sibling shard of a fan-out recording meanwhile no
longer sends it to the locked path: the 100 shards of a fan-out used to collide there one in five.
Its template context is the store as read, as if it had run at that moment.

Either way the write is the one the locked path would have made then: both ask the same decider
(`pipelines.engine.decide`) over the same rows. When the write did not apply (a duplicate, a
cancel, another node for the last task), nothing was written and the step takes the locked path,
which runs it again (it has no side effects).
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
from controlplane.executions.services.segments import graph_has_gates
from controlplane.executions.store import (
    attempt_record,
    execution_row,
    is_postgresql,
    run_progress,
    store_write,
    succeeded_event,
)
from pipelines.engine import FINISH, IGNORE, RUN, AttemptRecord, DeliveryFacts, Snapshot, decide, decide_finish
from pipelines.engine.decider import RECORDED
from pipelines.engine.fanout import is_map

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
    if final and graph_has_gates(pinned.graph):
        return None  # the last task of a segment opens the next one, under the lock (`segments`)
    if _first_try_of_a_plain_step(pinned, job, final, delivery):
        outcome = _claim_first_attempt_in_one_statement(pinned, job, execution_id, shard, shard_count, delivery)
        if outcome is not None:
            return outcome
    reads = claim_reads(pinned, node_id, with_outputs=needs_upstream_outputs(job))
    # The last task decides on every node: the run finishes only if none is pending.
    progress = run_progress(execution_id, with_output=reads.with_output, node_ids=None if final else reads.node_ids)
    if progress is None or progress[0] != ExecutionStatus.RUNNING:
        return None
    status, event_seq, rows = progress
    # The read has no claim details (task, try, process): a running attempt makes the decision
    # `defer`, and the locked path, which reads them, decides instead.
    snapshot = Snapshot.of(execution_id, status, [attempt_record(row) for row in rows])
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
    events = _run_to_success(execution, run, job, context)
    if events is None:
        return None
    update_fields: tuple[str, ...] = ()
    if final:
        attempts = {**snapshot.attempts, (node_id, shard): (*mine, AttemptRecord(0, node_id, shard, run.attempt,
                                                                                  run.status))}
        finish = decide_finish(pinned.graph, Snapshot(snapshot.execution_id, status, attempts), DeliveryFacts())
        if finish.kind != FINISH:
            return None  # a duplicate fired the last task early: the locked path waits for the rest
        events.append(succeeded_event(execution, finish.skipped))
        update_fields = ("status", "finished_at")
    # The last task decides on every node, so nothing may have moved; any other step only on the
    # run still running and on its own shard, which the unique attempt guards (module docstring).
    written = store_write(execution=execution, insert=run, events=events, completes=run, completion=1,
                          execution_fields=update_fields, expect_seq=event_seq if final else None,
                          expect_running=not final)
    if written is None:
        logger.debug("step.unlocked_write_conflict", extra={"execution_id": str(execution_id), "node_id": node_id,
                                                             "shard": shard})
        return None
    if final:
        return Outcome("done", ExecutionStatus.SUCCEEDED, detail=f"{StepStatus.SUCCEEDED}; run finished")
    return Outcome("done", StepStatus.SUCCEEDED)


def _first_try_of_a_plain_step(pinned: PinnedGraph, job, final: bool, delivery: Delivery) -> bool:
    """A first delivery of a step that reads no upstream output and has no branch on its way in:
    all its claim needs to know is that the run is running, its predecessors succeeded and it has
    no attempt yet, and one statement can check all three as it writes."""
    if final or delivery.retries or needs_upstream_outputs(job):
        return False
    # A map predecessor's shard count is known only from its recorded shards, not from the graph.
    return all(edge.branch is None and not is_map(pinned.graph.job(edge.source).type)
               for edge in pinned.graph.incoming.get(job["id"], ()))


def _claim_first_attempt_in_one_statement(pinned: PinnedGraph, job, execution_id, shard: int, shard_count: int,
                                          delivery: Delivery) -> Outcome | None:
    """Run the step, then write attempt 1 with its events in one statement that applies only if
    the run is running and every shard of every predecessor is recorded succeeded (the unique
    attempt refuses a second writer). None when it did not apply (a predecessor pending or
    skipped, an attempt already there, the run not running: nothing was written): the read-then-
    write path below decides then, as the decider would have from the start."""
    node_id = job["id"]
    execution = Execution(id=execution_id, graph=pinned.raw, status=ExecutionStatus.RUNNING, event_seq=0,
                          **pinned.facts)
    run = new_attempt(execution, job, shard, shard_count, [], delivery, deferred=True)
    context = template_context(execution, Snapshot.of(execution_id, ExecutionStatus.RUNNING, []), with_steps=False)
    events = _run_to_success(execution, run, job, context)
    if events is None:
        return None
    predecessors = pinned.graph.predecessors(node_id)
    shards = sum(pinned.graph.job(p).replicas for p in predecessors)
    written = store_write(execution=execution, insert=run, events=events, completes=run, completion=1,
                          expect_running=True, expect_succeeded=(sorted(predecessors), shards))
    return None if written is None else Outcome("done", StepStatus.SUCCEEDED)


def _run_to_success(execution: Execution, run, job, context) -> list | None:
    """Run the unsaved attempt `run`; on success fill in its result and return the events that
    record it (started, completed), else None: a failure is the locked path's to record."""
    rendered, output, error = run_attempt(execution.company_id, run, job, context)
    if error is not None:
        return None
    run.input, run.output, run.status, run.finished_at = rendered, output, StepStatus.SUCCEEDED, timezone.now()
    base = {"node_id": run.node_id, "shard": run.shard, "attempt": run.attempt}
    return [(EventType.STEP_STARTED, started_data(run)), (EventType.STEP_COMPLETED, {**base, "output": output})]


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
