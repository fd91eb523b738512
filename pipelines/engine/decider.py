"""What a delivery of a task does, decided from the graph and a snapshot of what the run recorded.

Every task of a canvas may be delivered more than once (late ack, redelivery, a chord body fired
twice on Redis, a lost step re-published), so each decides from the store alone. `decide` is the
one place that says how, for a step's shard and for a compensation; `settle` says what a finished
attempt's error leads to; `decide_finish` whether the run is done. Callers do the I/O: they read
the snapshot, compute the facts only the OS or the database knows (`DeliveryFacts`), and write
what the `Decision` says. In order, for a step:

- the execution is not running (failed, compensating, cancelled) -> ignore;
- the shard already succeeded or was skipped -> ignore, reporting that status (`recorded`);
- an attempt of the shard is running -> a duplicate -> ignore, unless its try is over: this
  delivery is a later try of the very task that claimed it, or its process is gone, or it is past
  its hard time limit; then it is lost first (`lose`) and the shard goes on;
- the node has used its `max_attempts` (lost attempts count: a process that dies every time would
  otherwise take its group's workers down for ever) -> dead-letter, `lost_repeatedly` when all
  were lost;
- an attempt is lost now, and counts -> wait the node's retry delay after it (its backoff, as
  after a failed attempt), then the next delivery runs the next attempt;
- a predecessor has not completed -> wait (bounded; then fail the run);
- all incoming edges are dead -> skip;
- otherwise run attempt max+1 with the shard's idempotency key.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pipelines.engine.graph import ExecutionGraph, Job
from pipelines.engine.history import (
    FAILED,
    LOST,
    PENDING,
    RUNNING,
    SKIPPED,
    SUCCEEDED,
    AttemptRecord,
    Snapshot,
    is_dead,
    pending_nodes,
    shard_state,
    skipped_nodes,
    waiting_on,
)
from pipelines.engine.limits import MAX_WAITS, attempt_expired, wait_countdown

# Decision kinds.
RUN, SKIP, WAIT, RETRY, DEAD_LETTER, FAIL, FINISH, IGNORE, DEFER, DONE = (
    "run", "skip", "wait", "retry", "dead_letter", "fail", "finish", "ignore", "defer", "done")
# Why a delivery is ignored.
NOT_RUNNING, RECORDED, DUPLICATE = "not_running", "recorded", "duplicate"
# Why a running attempt is lost.
RETRIED, PROCESS_GONE, EXPIRED = "retried", "process_gone", "expired"
# Execution statuses a delivery acts in.
EXECUTION_RUNNING, EXECUTION_COMPENSATING = "running", "compensating"


@dataclass(frozen=True, slots=True)
class DeliveryFacts:
    """The delivery, and what only the caller can know about a running attempt of its shard.

    `claimer_gone`: the process that claimed the shard's running attempt has exited (None: not
    looked at; a running attempt then makes the decision `defer`). `max_uncounted_lost`: how often
    an attempt may be lost to the engine's own database failing before the shard fails anyway.
    """

    task_id: str = ""
    retries: int = 0
    claimer_gone: bool | None = None
    max_uncounted_lost: int = 3


@dataclass(frozen=True, slots=True)
class Loss:
    """A running attempt to record lost before anything else, and why (`cause`, `reason` prose).
    `counts`: whether it counts against the node's `max_attempts`."""

    record: AttemptRecord
    cause: str
    reason: str
    counts: bool = True


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do: `kind` and what that kind needs.

    run/skip/dead_letter: `attempt` (the number to record) and `idempotency_key`; wait/retry:
    `countdown`; dead_letter/fail: `error` (the step's error dict); ignore: `status` to report and
    `reason`; finish: `skipped` nodes. `lose`: a running attempt to record lost first (any kind).
    """

    kind: str
    attempt: int = 0
    idempotency_key: str = ""
    lose: Loss | None = None
    countdown: float = 0.0
    status: str = ""
    reason: str = ""
    detail: str = ""
    error: dict[str, Any] | None = None
    skipped: tuple[str, ...] = ()


def idempotency_key(execution_id, node_id: str, shard: int, *, compensation: bool = False) -> str:
    """The key a step presents to the outside world: stable across attempts and redeliveries."""
    key = f"{execution_id}:{node_id}:{shard}"
    return f"{key}:compensate" if compensation else key


def decide(graph: ExecutionGraph, node_id: str, shard: int, snapshot: Snapshot, facts: DeliveryFacts,
           now: datetime, *, compensation: bool = False, rand: random.Random | None = None) -> Decision:
    """What a delivery of `node_id`'s shard `shard` (or of its compensation) does; see the module."""
    expected = EXECUTION_COMPENSATING if compensation else EXECUTION_RUNNING
    if snapshot.status != expected:
        return Decision(IGNORE, status=snapshot.status, reason=NOT_RUNNING, detail=f"execution is {snapshot.status}")
    job = graph.job(node_id)
    mine = snapshot.of_shard(node_id, shard, compensation=compensation)
    state = shard_state(mine)
    if state != PENDING:
        detail = "already compensated" if compensation else "already recorded; not run again"
        return Decision(IGNORE, status=state, reason=RECORDED, detail=detail)
    if any(record.status in (RUNNING, LOST) and not record.claim_known for record in mine):
        # Whether a running attempt is over, and whether a lost one counts, needs its claim.
        return Decision(DEFER, detail="the shard's running or lost attempts need claim details this read left out")
    lose = None
    running = [record for record in mine if record.status == RUNNING]
    if running:
        lose = _loss(running[-1], job, facts, now)
        if lose is None:
            return Decision(IGNORE, status=RUNNING, reason=DUPLICATE, detail=f"duplicate delivery: attempt "
                            f"{running[-1].attempt} is running on {running[-1].worker}")
        if lose.cause == DEFER:
            return Decision(DEFER, detail="a running attempt needs facts this caller did not read")
    attempt = max((record.attempt for record in mine), default=0) + 1
    key = idempotency_key(snapshot.execution_id, node_id, shard, compensation=compensation)
    exhausted = _exhausted(job, mine, lose, facts)
    if exhausted is not None:
        return Decision(FAIL if compensation else DEAD_LETTER, attempt=attempt, idempotency_key=key, lose=lose,
                        error=exhausted, detail=exhausted["message"])
    if lose is not None:
        # The jitter is drawn from the shard and attempt, not the clock: a decision is a function of
        # its inputs (the locked and lock-free reads, and any redelivery, must reach the same one).
        jitter = rand if rand is not None else random.Random(f"{key}:{attempt}")
        countdown = lost_retry_delay(job, lose.record.attempt, counts=lose.counts, rand=jitter)
        if countdown > 0:
            return Decision(WAIT, lose=lose, countdown=countdown, status="waiting",
                            detail=f"attempt {lose.record.attempt} was lost; attempt {attempt} starts after the "
                                   f"node's retry delay")
    if compensation:
        return Decision(RUN, attempt=attempt, idempotency_key=key, lose=lose)
    waiting = waiting_on(graph, node_id, snapshot.attempts)
    if waiting:
        return wait_or_give_up(facts, f"predecessors {waiting} have not completed", lose=lose)
    if is_dead(graph, node_id, snapshot.attempts):
        return Decision(SKIP, attempt=attempt, idempotency_key=key, lose=lose, status=SKIPPED,
                        detail="all incoming edges are dead")
    return Decision(RUN, attempt=attempt, idempotency_key=key, lose=lose)


def lost_retry_delay(job: Job, attempt: int, *, counts: bool = True, rand: random.Random | None = None) -> float:
    """Seconds the attempt after lost attempt number `attempt` waits. Like a failed attempt, a lost
    one that counts is retried after the node's backoff: a process that dies under a step (out of
    memory, a poisoned input) does not come back at once. One that does not count (the engine's
    own database failed under it) is taken over by the same task's retry, which has waited already."""
    return job.retry.delay_for(attempt, rand) if counts else 0.0


def _loss(current: AttemptRecord, job: Job, facts: DeliveryFacts, now: datetime) -> Loss | None:
    """Why the running attempt `current` is over (a Loss), None when it may still report (a
    duplicate delivery), or a Loss with cause DEFER when the caller did not look at its process."""
    if facts.task_id and current.task_id == facts.task_id and facts.retries > current.request_retries:
        # Celery acked that try when it published this retry, so nothing runs the attempt any more;
        # the engine's database failed under it, not the step's process: it does not count.
        return Loss(current, RETRIED, "the try that ran it ended without recording a result (its database "
                    "connection was lost); this retry of the same task runs it again", counts=False)
    if facts.claimer_gone:
        return Loss(current, PROCESS_GONE, f"the process (pid {current.pid}) that ran it on {current.worker} "
                    "died; Celery delivered the task again")
    if attempt_expired(current.started_at, job.timeout_s, now):
        what = "compensation" if current.is_compensation else "attempt"
        return Loss(current, EXPIRED, f"{what} ran past its hard time limit")
    if facts.claimer_gone is None:
        return Loss(current, DEFER, "")
    return None


def _exhausted(job: Job, mine, lose: Loss | None, facts: DeliveryFacts) -> dict[str, Any] | None:
    """The error to fail the shard with when it has no attempts left after a lost one, else None.

    Failed attempts were retried only while attempts were left (`settle`), so only a lost one can
    have used the last: lost attempts count against `max_attempts` like failures, except those
    lost to the engine's own database (bounded by `max_uncounted_lost` instead).
    """
    lost_now = (lose.counts,) if lose is not None else ()
    lost = [record.lost_counts for record in mine if record.status == LOST] + list(lost_now)
    if not lost:
        return None
    counted_lost = sum(lost)
    uncounted = len(lost) - counted_lost
    failed = sum(1 for record in mine if record.status == FAILED)
    used = counted_lost + failed
    if used < job.retry.max_attempts and uncounted < facts.max_uncounted_lost:
        return None
    if failed == 0:
        return {"message": f"attempt lost {len(lost)} times: the process running it died each time (out of "
                           "memory? a crash?); not tried again", "retryable": False,
                "details": {"reason": "lost_repeatedly", "lost": len(lost)}}
    return {"message": f"the node used its {job.retry.max_attempts} attempt(s) ({failed} failed, {len(lost)} "
                       "lost); not tried again", "retryable": False,
            "details": {"reason": "attempts_exhausted", "lost": len(lost), "failed": failed,
                        "max_attempts": job.retry.max_attempts}}


def wait_or_give_up(facts: DeliveryFacts, reason: str, *, lose: Loss | None = None) -> Decision:
    """Wait (a short, growing countdown) while the delivery has waits left; then fail the run."""
    if facts.retries < MAX_WAITS:
        return Decision(WAIT, lose=lose, countdown=wait_countdown(facts.retries), status="waiting", detail=reason)
    return Decision(FAIL, lose=lose, status="failed", detail=reason, error={"message": f"gave up waiting: {reason}"})


def settle(job: Job, attempt: int, error: dict[str, Any] | None, *, running: bool, compensation: bool = False,
           rand: random.Random | None = None) -> Decision:
    """What a finished attempt's result leads to: done (no error), retry after a countdown (a retryable
    error with attempts left while the run goes on), else dead-letter (a step) or fail (a
    compensation: the saga fails)."""
    if error is None:
        return Decision(DONE, attempt=attempt, status=SUCCEEDED)
    if error.get("retryable") and job.retry.should_retry(attempt) and running:
        countdown = job.retry.delay_for(attempt, rand)
        return Decision(RETRY, attempt=attempt, countdown=countdown, status=FAILED, error=error,
                        detail=error.get("message", ""))
    return Decision(FAIL if compensation else DEAD_LETTER, attempt=attempt, status=FAILED, error=error,
                    detail=error.get("message", ""))


def decide_finish(graph: ExecutionGraph | None, snapshot: Snapshot, facts: DeliveryFacts) -> Decision:
    """The end of the canvas: finish once every node is recorded succeeded or skipped."""
    if snapshot.status == SUCCEEDED:
        return Decision(IGNORE, status=snapshot.status, reason=RECORDED, detail="already finished")
    if snapshot.status != EXECUTION_RUNNING:
        return Decision(IGNORE, status=snapshot.status, reason=NOT_RUNNING, detail=f"execution is {snapshot.status}")
    pending = pending_nodes(graph, snapshot.attempts)
    if pending:
        return wait_or_give_up(facts, f"nodes {pending} have not completed")
    return Decision(FINISH, status=SUCCEEDED, skipped=tuple(skipped_nodes(graph, snapshot.attempts)))
