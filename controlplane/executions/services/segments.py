"""Publishing a gated run one segment at a time (`pipelines.engine.segments`).

A run whose graph has gates (approval, map) carries `canvas["segments"]`: `[{index, gates,
nodes, plan}]`. The start publishes segment 0 (or, when segment 0 is empty, asks
`segment_advance`). The last task of a published segment is the canvas's `final` one: instead of
finishing the run it calls `segment_advance`, which, under the run's row lock, finds the current
segment (the first with a node or gate not recorded succeeded or skipped) and asks the handler
registered for each of its gates' step types whether the gate is open:

- "resolved": open (the handler recorded the gate, e.g. a decided approval);
- "held": not yet; the run is set `waiting` and nothing is published (no Celery message, no
  countdown, no worker slot), until `gate_resolved` asks again;
- "run": the handler's plan item (a map's item tasks and join) runs first and resolves the gate;
  the segment's canvas is chained after it in the same publish.

Once no gate is held, the segment is published after commit and recorded (`segment.dispatched`
with its index), so a second advance (a duplicate final task, a second decision, a redelivered
`gate_resolved`) publishes nothing twice. The watchdog re-drives the current segment only
(`segment_redrive`), never a waiting run. A gate whose incoming edges are all dead (an untaken
condition branch) is recorded skipped without asking its handler, like any step.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Literal

from django.db import transaction
from django.utils import timezone

from controlplane.executions.models import EventType, Execution, ExecutionEvent, ExecutionStatus, StepRun, StepStatus
from controlplane.executions.services.attempts import Delivery
from controlplane.executions.services.state import pinned_graph
from controlplane.executions.store import attempt_records, locked_execution, store_write
from pipelines.canvas import Barrier, Chain, Chord, PlanItem, iter_tasks, plan_from_dict
from pipelines.engine import Snapshot
from pipelines.engine.history import PENDING, is_dead, node_state
from pipelines.engine.segments import GATE_TYPES, Segment, current_segment

logger = logging.getLogger(__name__)

RESOLVED, HELD, RUN = "resolved", "held", "run"


@dataclass
class GateOpen:
    """A gate handler's answer: `state` resolved | held | run; `plan`, with "run", the plan item
    to publish before the segment (its completion resolves the gate)."""

    state: Literal["resolved", "held", "run"]
    plan: PlanItem | None = None


GateHandler = Callable[[Execution, dict, Snapshot], GateOpen]
_HANDLERS: dict[str, GateHandler] = {}


def register_gate(step_type: str, handler: GateHandler) -> None:
    """Make `handler(execution, job, snapshot) -> GateOpen` the gate of nodes of `step_type`. It is
    called under the run's row lock, possibly more than once per gate (duplicates, re-drives,
    every advance until the gate opens): it must be idempotent. "resolved" means the handler has
    recorded the gate's node (succeeded or skipped); a handler may also fail the step for good
    (`fail_execution`, via `steps.gate_attempt_record`): nothing is published then."""
    _HANDLERS[step_type] = handler


def run_segments(execution: Execution) -> list[Segment] | None:
    """The run's segments, None for a run without gates (one canvas, as before segments)."""
    stored = (execution.canvas or {}).get("segments")
    if not stored:
        return None
    return [Segment(s["index"], tuple(s["gates"]), tuple(s["nodes"])) for s in stored]


def has_gates(execution: Execution) -> bool:
    """Whether the run was compiled into segments (from the pinned graph this process caches, so
    the final task of an ungated run reads nothing more)."""
    return graph_has_gates(pinned_graph(execution.pk, execution.graph).graph)


def graph_has_gates(graph) -> bool:
    """Whether a run's `ExecutionGraph` has gate nodes (so its canvas is cut into segments)."""
    return any(job.type in GATE_TYPES for job in graph.jobs)


def segment_pending_nodes(execution: Execution) -> list[str]:
    """The nodes still pending of the run's current segment once it was dispatched (what its
    stand-alone finish waits for); [] when it may advance."""
    segments = run_segments(execution) or []
    graph = pinned_graph(execution.pk, execution.graph).graph
    attempts = Snapshot.of(execution.pk, execution.status, attempt_records(execution.pk, with_output=False)).attempts
    pending = [n for n in (job.id for job in graph.jobs) if node_state(graph.job(n), attempts) == PENDING]
    segment = current_segment(segments, lambda node: node not in pending)
    if segment is None or not _dispatched(execution.pk, segment.index):
        return []
    return [n for n in segment.nodes if n in pending]


def segment_advance(execution_id, *, delivery: Delivery | None = None) -> str:
    """Open the gates of the run's current segment and publish it, or set the run waiting, or
    finish it when no segment is left. Returns what it did (for logs and tests)."""
    with transaction.atomic():
        return segment_advance_locked(locked_execution(execution_id), delivery=delivery)


def gate_resolved(execution_id, node_id: str, *, by: str | None = None) -> str:
    """A gate was decided (its node recorded): advance. Idempotent: see `segment_advance`."""
    logger.info("segment.gate_resolved", extra={"execution_id": str(execution_id), "step": node_id, "by": by})
    return segment_advance(execution_id)


def segment_advance_locked(execution: Execution, *, delivery: Delivery | None = None, redrive: bool = False) -> str:
    """`segment_advance` for a run whose row the caller holds locked. `redrive` (the watchdog):
    publish the current segment again even though it was dispatched already."""
    if execution.status not in (ExecutionStatus.RUNNING, ExecutionStatus.WAITING):
        return f"ignored: execution is {execution.status}"
    segments = run_segments(execution)
    if segments is None:
        raise ValueError(f"execution {execution.pk} has no segments; its canvas is published whole")
    graph = pinned_graph(execution.pk, execution.graph).graph
    snapshot = Snapshot.of(execution.pk, execution.status, attempt_records(execution.pk, with_output=True))

    def done(node: str) -> bool:
        return node_state(graph.job(node), snapshot.attempts) != PENDING

    segment = current_segment(segments, done)
    if segment is None:
        return _finish(execution, delivery)
    dispatched = _dispatched(execution.pk, segment.index)
    if dispatched and not redrive:
        if delivery is not None and any(not done(n) for n in segment.nodes):
            _wait_for_segment(execution, delivery)  # a duplicate fired the last task early
        return f"segment {segment.index} already dispatched"
    held, plans = [], []
    for gate in segment.gates:
        if done(gate):
            continue
        answer = _open(execution, graph, gate, snapshot)
        if answer.state == HELD:
            held.append(gate)
        elif answer.state == RUN:
            if answer.plan is None:
                raise ValueError(f"gate {gate!r} answered 'run' without a plan item")
            plans.append(answer.plan)
        elif answer.state != RESOLVED:
            raise ValueError(f"gate {gate!r} answered {answer.state!r}; expected resolved, held or run")
    if execution.status not in (ExecutionStatus.RUNNING, ExecutionStatus.WAITING):
        return f"a gate of segment {segment.index} ended the run: {execution.status}"  # e.g. a map's list too long
    if held:
        if execution.status != ExecutionStatus.WAITING:
            execution.status = ExecutionStatus.WAITING
            store_write(execution=execution, events=[(EventType.EXECUTION_WAITING, {
                "segment": segment.index, "gates": held})], execution_fields=["status"])
        return f"waiting on {held}"
    root = _segment_root(execution, segment, plans)
    _record_dispatch(execution, segment, dispatched)
    if root is None:  # an empty segment whose gates are all resolved: on to the next one
        if segment.gates and not all(_recorded(execution, gate) for gate in segment.gates):
            raise ValueError(f"a gate of segment {segment.index} answered 'resolved' but is not recorded; "
                             "a handler records its gate (succeeded or skipped) before it says resolved")
        return segment_advance_locked(execution, delivery=delivery)
    canvas = {"kind": "plan", "strategy": execution.canvas.get("strategy", "series-parallel"),
              "task_count": sum(1 for _ in iter_tasks(root)), "root": root.to_dict(),
              "timeouts": execution.canvas.get("timeouts") or {}}
    _publish_after_commit(execution, canvas)
    return f"segment {segment.index} dispatched"


def _open(execution: Execution, graph, gate: str, snapshot: Snapshot) -> GateOpen:
    job = execution.job(gate)
    if is_dead(graph, gate, snapshot.attempts):
        _record_skipped(execution, job)
        return GateOpen(RESOLVED)
    handler = _HANDLERS.get(job.get("type", ""))
    if handler is None:
        raise ValueError(f"no gate handler for step type {job.get('type')!r} of node {gate!r}; "
                         "register one with register_gate")
    return handler(execution, job, snapshot)


def _record_skipped(execution: Execution, job: dict) -> None:
    now = timezone.now()
    run = StepRun(execution=execution, node_id=job["id"], shard=0, shard_count=1, attempt=1, group=job["group"],
                  queue="", status=StepStatus.SKIPPED, started_at=now, finished_at=now)
    store_write(execution=execution, insert=run, events=[(EventType.STEP_SKIPPED, {
        "node_id": job["id"], "shard": 0, "reason": "every incoming edge is dead"})])


def _segment_root(execution: Execution, segment: Segment, plans: list[PlanItem]) -> PlanItem | None:
    """What to publish for `segment`: the gates' plan items (in parallel), then its own canvas."""
    stored = execution.canvas["segments"][segment.index].get("plan")
    own = plan_from_dict(stored).root if stored else None
    first: PlanItem | None = None
    if len(plans) == 1:
        first = plans[0]
    elif plans:
        first = Chord(tuple(plans), Barrier(f"segment-{segment.index}"))
    if first is None or own is None:
        return first or own
    items: list[PlanItem] = []
    for part in (first, own):  # a chain never holds a chain (the converter's shape rule)
        items.extend(part.items if isinstance(part, Chain) else (part,))
    return Chain(tuple(items))


def _dispatched(execution_id, index: int) -> bool:
    if index == 0:
        return True  # segment 0 is what the start published (an empty one has nothing to publish)
    return ExecutionEvent.objects.filter(execution_id=execution_id, type=EventType.SEGMENT_DISPATCHED,
                                         data__index=index).exists()


def _recorded(execution: Execution, node_id: str) -> bool:
    return StepRun.objects.filter(execution_id=execution.pk, node_id=node_id, is_compensation=False,
                                  status__in=[StepStatus.SUCCEEDED, StepStatus.SKIPPED]).exists()


def _record_dispatch(execution: Execution, segment: Segment, already: bool) -> None:
    events: list[tuple[str, dict[str, Any]]] = []
    fields: list[str] = []
    if execution.status == ExecutionStatus.WAITING:
        execution.status = ExecutionStatus.RUNNING
        fields.append("status")
        events.append((EventType.EXECUTION_RESUMED, {"segment": segment.index}))
    if not already:
        events.append((EventType.SEGMENT_DISPATCHED, {"index": segment.index, "gates": list(segment.gates),
                                                      "nodes": list(segment.nodes)}))
    if events:
        store_write(execution=execution, events=events, execution_fields=fields)


def _publish_after_commit(execution: Execution, canvas: dict[str, Any]) -> None:
    from controlplane.executions.services.start import execution_queues  # start imports this module

    execution_id, queues = str(execution.pk), execution_queues(execution)
    transaction.on_commit(lambda: _publish(execution_id, canvas, queues))


def _publish(execution_id: str, canvas: dict[str, Any], queues: dict[str, str]) -> None:
    """A broker that fails now leaves the run running with its segment recorded as dispatched and
    nothing moving: the watchdog re-drives it (`segment_redrive`)."""
    from controlplane.executions.dispatch import build_signature, publish  # dispatch imports the services

    try:
        publish(execution_id, build_signature(execution_id, canvas, queues))
    except Exception:
        logger.exception("segment.dispatch_failed", extra={"execution_id": execution_id})


def segment_redrive(execution: Execution) -> str:
    """The watchdog's re-drive of a gated run (row locked): its current segment only."""
    return segment_advance_locked(execution, redrive=True)


def _finish(execution: Execution, delivery: Delivery | None) -> str:
    from controlplane.executions.services.steps import finish_locked  # steps imports this module: at call time

    if execution.status == ExecutionStatus.WAITING:
        execution.status = ExecutionStatus.RUNNING
        store_write(execution=execution, events=[(EventType.EXECUTION_RESUMED, {"segment": None})],
                    execution_fields=["status"])
    finish_locked(execution, delivery or Delivery())
    return f"finished: {execution.status}"


def _wait_for_segment(execution: Execution, delivery: Delivery) -> None:
    from controlplane.executions.services.steps import dispatch_finish_after_commit  # at call time, as above

    dispatch_finish_after_commit(execution.pk, delivery.queue)
