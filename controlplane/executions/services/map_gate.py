"""A map node's gate: when the run reaches it, its items become shards and their canvas is published.

`map_gate_open` is the map's handler for the segments mechanism (`segments.register_gate`): it is
called under the run's row lock once the segment before the map completed, and says what to do:

- ``run``: the items were rendered from the run's recorded context (`pipelines.engine.fanout`),
  appended as the node's one `map.expanded` event, and `plan` is the canvas of their lanes and
  join (`map_plan`), to publish before the next segment;
- ``failed``: ``items`` did not render to a list, or to one over the maximum: the map step failed
  for good like any step (a failed attempt, a dead letter, the run compensating).

A map whose incoming edges are all dead never gets here: the segments mechanism records any such
gate skipped, like any step.

It is idempotent: a gate that opened already (a re-drive, a duplicate delivery) returns the plan of
the items it recorded then, never rendering or appending anything again, so no item is created
twice (the items' claims make the re-published tasks harmless); a map already recorded failed or
skipped answers that again.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from controlplane.executions.models import EventType, Execution, StepRun, StepStatus
from controlplane.executions.services.attempts import Delivery, error_dict, new_attempt
from controlplane.executions.services.events import event_append
from controlplane.executions.services.map_items import map_expansion
from controlplane.executions.services.segments import RESOLVED, GateOpen
from controlplane.executions.services.state import pinned_graph, template_context
from controlplane.executions.store import attempt_records, store_write
from pipelines.canvas import PlanItem
from pipelines.engine import Snapshot
from pipelines.engine.fanout import expand_items, map_plan
from pipelines.errors import PipelineError

logger = logging.getLogger(__name__)

RUN, FAILED_GATE = "run", "failed"


@dataclass(frozen=True)
class MapOpening:
    """What the gate of a map node does: `state` run (publish `plan`) or failed (`error`); `count`:
    the items (shards) the node has."""

    state: str
    plan: PlanItem | None = None
    count: int = 0
    error: dict[str, Any] | None = None


def map_gate_open(execution: Execution, job: dict[str, Any], snapshot: Snapshot | None = None) -> MapOpening:
    """Open the gate of map node `job` (its job dict) of the locked `execution`; see the module.
    `snapshot`: the run's attempts with their outputs, as the advance read them under the same
    lock (the items' template needs every upstream output); read here when None."""
    spec = pinned_graph(execution.pk, execution.graph).jobs[job["id"]]
    node_id = spec["id"]
    recorded = map_expansion(execution.pk, node_id)
    if recorded is not None:
        return MapOpening(RUN, map_plan(node_id, recorded["count"], recorded["max_parallel"], spec["group"]),
                          recorded["count"])
    if snapshot is None:
        snapshot = Snapshot.of(execution.pk, execution.status, attempt_records(execution.pk, with_output=True))
    mine = snapshot.of_shard(node_id, 0)
    if mine:  # recorded without items: its gate failed when it first opened
        return MapOpening(FAILED_GATE, error={"message": f"map node {node_id!r} was recorded "
                                                         f"{mine[-1].status} when its gate opened"})
    context = template_context(execution, snapshot)
    try:
        expansion = expand_items(spec.get("config") or {}, context,
                                 max_items=int(settings.FLOWPLANE_MAP_MAX_ITEMS),
                                 max_parallel=int(settings.FLOWPLANE_MAP_MAX_PARALLEL))
    except PipelineError as exc:  # a template or the list itself: the step fails for good, as data
        error = {**error_dict(exc), "retryable": False}
        _record_failed(execution, spec, error)
        return MapOpening(FAILED_GATE, error=error)
    event_append(execution=execution, type=EventType.MAP_EXPANDED, data={
        "node_id": node_id, "count": expansion.count, "max_parallel": expansion.max_parallel,
        "items": expansion.items})
    logger.info("map.expanded", extra={"execution_id": str(execution.pk), "step": node_id,
                                       "items": expansion.count, "max_parallel": expansion.max_parallel})
    return MapOpening(RUN, map_plan(node_id, expansion.count, expansion.max_parallel, spec["group"]),
                      expansion.count)


def map_gate(execution: Execution, job: dict[str, Any], snapshot: Snapshot) -> GateOpen:
    """The segments' handler of map nodes (`register_gate("map", map_gate)`): "run" the items'
    plan; once the gate failed the step the run is compensating, which ends the advance."""
    opening = map_gate_open(execution, job, snapshot)
    return GateOpen(RUN, opening.plan) if opening.state == RUN else GateOpen(RESOLVED)


def _record_failed(execution: Execution, spec: dict[str, Any], error: dict[str, Any]) -> None:
    """The map step failed for good: a failed attempt of shard 0, its dead letter, the run failing
    (the saga then undoes what completed), exactly as for a step that ran out of attempts."""
    from controlplane.executions.services.steps import gate_attempt_record  # steps imports this module

    gate_attempt_record(execution, spec, rendered={"items": (spec.get("config") or {}).get("items")}, error=error)


def empty_map_join(execution: Execution, node_id: str, delivery: Delivery) -> StepRun | None:
    """The join of a map node whose gate recorded no item: the node completes with output `[]`,
    recorded once as shard 0 of a node of 0 shards (`history.shard_total`). None when the gate
    recorded items, or the join is recorded already (a duplicate delivery)."""
    recorded = map_expansion(execution.pk, node_id)
    if recorded is None or recorded["count"] != 0:
        return None
    if StepRun.objects.filter(execution_id=execution.pk, node_id=node_id, is_compensation=False).exists():
        return None
    spec = pinned_graph(execution.pk, execution.graph).jobs[node_id]
    run = new_attempt(execution, spec, 0, 0, [], delivery, deferred=True)
    run.status, run.input, run.output, run.finished_at = StepStatus.SUCCEEDED, {"items": []}, [], run.started_at
    base = {"node_id": node_id, "shard": 0, "attempt": 1}
    store_write(execution=execution, insert=run, completes=run, events=[
        (EventType.STEP_STARTED, {**base, "worker": run.worker, "queue": run.queue}),
        (EventType.STEP_COMPLETED, {**base, "output": [], "items": 0})])
    return run
