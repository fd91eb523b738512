"""What a run has recorded, as plain values, and the rules read from it.

A `Snapshot` is the run's status and its recorded attempts by (node, shard), oldest first, as one
read returned them. The rules (a shard's and a node's state, the skip rule, what a node waits on,
the template context) are pure functions of a graph and a snapshot: the locked claim, the
lock-free claim and the saga all decide from them, so they cannot drift apart. A node's width is
its replicas, or for a map node the item count recorded with its shards (`shard_total`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable, Mapping

from pipelines.engine.graph import ExecutionGraph, Job

MAP_TYPE = "map"  # `pipelines.steps.map.MAP_TYPE`: a node whose shard count is known at run time

# Attempt statuses (the values of the store's `StepStatus`).
RUNNING, SUCCEEDED, FAILED, SKIPPED, LOST = "running", "succeeded", "failed", "skipped", "lost"
COMPENSATING, COMPENSATED, COMPENSATION_FAILED = "compensating", "compensated", "compensation_failed"
# A shard's or node's state.
PENDING = "pending"
_DONE = frozenset({SUCCEEDED, COMPENSATING, COMPENSATED, COMPENSATION_FAILED})


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One recorded attempt of a shard (or of its compensation).

    `task_id` and `request_retries` (the Celery try that claimed it) and `pid` are known only
    when the reader loaded them (`claim_known`): the lock-free read does not, and defers any
    running attempt to the locked path. `lost_counts`: whether a lost attempt counts against the
    node's `max_attempts` (False when the engine's database, not the step's process, failed).
    `shard_count`: how many shards the node ran as; a map node's is known only at run time.
    """

    id: int
    node_id: str
    shard: int
    attempt: int
    status: str
    worker: str = ""
    started_at: datetime | None = None
    output: Any = None
    is_compensation: bool = False
    task_id: str | None = None
    request_retries: int = 0
    pid: int | None = None
    lost_counts: bool = True
    shard_count: int = 1

    @property
    def claim_known(self) -> bool:
        return self.task_id is not None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A run as one read saw it: id, status and attempts (compensations apart)."""

    execution_id: str
    status: str
    attempts: Mapping[tuple[str, int], tuple[AttemptRecord, ...]] = field(default_factory=dict)
    compensations: Mapping[tuple[str, int], tuple[AttemptRecord, ...]] = field(default_factory=dict)

    @classmethod
    def of(cls, execution_id, status: str, records: Iterable[AttemptRecord]) -> Snapshot:
        attempts: dict[tuple[str, int], list[AttemptRecord]] = {}
        compensations: dict[tuple[str, int], list[AttemptRecord]] = {}
        for record in records:
            (compensations if record.is_compensation else attempts).setdefault(
                (record.node_id, record.shard), []).append(record)
        return cls(str(execution_id), str(status), {k: tuple(v) for k, v in attempts.items()},
                   {k: tuple(v) for k, v in compensations.items()})

    def of_shard(self, node_id: str, shard: int, *, compensation: bool = False) -> tuple[AttemptRecord, ...]:
        return (self.compensations if compensation else self.attempts).get((node_id, shard), ())


def shard_state(records: Iterable[AttemptRecord]) -> str:
    """succeeded once any attempt succeeded (or was compensated since), skipped, else pending."""
    statuses = {record.status for record in records}
    if statuses & _DONE:
        return SUCCEEDED
    if SKIPPED in statuses:
        return SKIPPED
    return PENDING


def shard_total(job: Job, attempts: Mapping[tuple[str, int], Iterable[AttemptRecord]]) -> int | None:
    """How many shards the node runs as: its replicas, or for a map node the item count recorded
    with its shards (None until its first shard is recorded: it is pending then, whatever the
    count). An empty map's join records shard 0 with a count of 0 (`pipelines.engine.fanout`)."""
    if job.type != MAP_TYPE:
        return job.replicas
    first = tuple(attempts.get((job.id, 0), ()))
    return first[-1].shard_count if first else None


def node_state(job: Job, attempts: Mapping[tuple[str, int], Iterable[AttemptRecord]]) -> str:
    """succeeded when every shard succeeded (or was skipped), skipped when all were, else pending."""
    total = shard_total(job, attempts)
    if total is None:
        return PENDING
    states = {shard_state(attempts.get((job.id, shard), ())) for shard in range(total)}
    if states == {SKIPPED}:
        return SKIPPED
    if PENDING in states:
        return PENDING
    return SUCCEEDED


def node_output(job: Job, attempts) -> Any:
    """The node's output: its one shard's output, or the list of shard outputs (merge) by index;
    a map node's is always the list of its items' outputs in item order."""
    outputs = []
    for shard in range(shard_total(job, attempts) or 0):
        done = [r for r in attempts.get((job.id, shard), ()) if shard_state((r,)) == SUCCEEDED]
        outputs.append(done[-1].output if done else None)
    return outputs[0] if job.replicas == 1 and job.type != MAP_TYPE else outputs


def waiting_on(graph: ExecutionGraph, node_id: str, attempts) -> list[str]:
    """Predecessors of `node_id` that have not completed yet."""
    return sorted(p for p in graph.predecessors(node_id) if node_state(graph.by_id[p], attempts) == PENDING)


def is_dead(graph: ExecutionGraph, node_id: str, attempts) -> bool:
    """The skip rule: a node with incoming edges that are all dead is skipped.

    An edge is dead when its source was skipped, or its source is a condition whose output branch
    differs from the edge's `branch`. A node without incoming edges always runs.
    """
    incoming = graph.incoming.get(node_id, ())
    if not incoming:
        return False

    def dead(edge) -> bool:
        source = graph.by_id[edge.source]
        if node_state(source, attempts) == SKIPPED:
            return True
        if edge.branch is not None:
            output = node_output(source, attempts)
            branch = output.get("branch") if isinstance(output, dict) else None
            return branch != edge.branch
        return False

    return all(dead(edge) for edge in incoming)


def pending_nodes(graph: ExecutionGraph, attempts) -> list[str]:
    """Nodes of the run not yet recorded succeeded or skipped."""
    return [job.id for job in graph.jobs if node_state(job, attempts) == PENDING]


def skipped_nodes(graph: ExecutionGraph, attempts) -> list[str]:
    return [job.id for job in graph.jobs if node_state(job, attempts) == SKIPPED]


def template_context(graph: ExecutionGraph, attempts, *, execution_id, trigger_input: Any, trigger: str,
                     started_at: datetime | None, with_steps: bool = True) -> dict[str, Any]:
    """`{trigger, params, steps: {id: {output}}, execution}` as the run recorded it.

    `with_steps=False` leaves out upstream outputs, for a step that neither templates its config
    nor reads the context (they were not read).
    """
    steps: dict[str, Any] = {}
    if with_steps:
        for job in graph.jobs:
            state = node_state(job, attempts)
            if state == SUCCEEDED:
                steps[job.id] = {"output": node_output(job, attempts)}
            elif state == SKIPPED:
                steps[job.id] = {"output": None, "skipped": True}
    return {
        "trigger": trigger_input,
        "params": dict(graph.params),
        "steps": steps,
        "execution": {"id": str(execution_id), "trigger": trigger,
                      "started_at": started_at.isoformat() if started_at else None},
    }


@dataclass(frozen=True, slots=True)
class ClaimReads:
    """What a claim of one node reads: `with_outputs`, every upstream output (for the template
    context); `with_output`, step outputs at all (also for condition branches); `node_ids`, the
    nodes whose attempts it reads (None: all)."""

    with_outputs: bool
    with_output: bool
    node_ids: list[str] | None


def claim_reads(graph: ExecutionGraph, node_id: str, *, with_outputs: bool) -> ClaimReads:
    """The template context needs every upstream output; otherwise the node and its predecessors
    (statuses, and for condition branches outputs) are all a claim decides on."""
    incoming = graph.incoming.get(node_id, ())
    if with_outputs:
        return ClaimReads(True, True, None)
    branches = any(edge.branch is not None for edge in incoming)
    return ClaimReads(False, branches, [node_id, *{edge.source for edge in incoming}])
