"""A map node's recorded items: what its gate rendered once, read back by each item's attempt.

The gate (`map_gate`) appends one `map.expanded` event per map node of a run, with the items, and
never another: so the items an attempt (or a retry, a redelivery, a compensation) runs with are
the ones the gate saw, even if it ran again. Events are append-only, so each process keeps what
it read.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from controlplane.executions.models import EventType, ExecutionEvent
from pipelines.engine.fanout import item_context, item_job
from pipelines.errors import StepFailed

_CACHE: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()
_CACHE_SIZE = 64
_LOCK = threading.Lock()  # gunicorn serves a process's requests (and the gates they open) on threads


def map_expansion(execution_id, node_id: str) -> dict[str, Any] | None:
    """The `map.expanded` event's data of `node_id` ({node_id, count, max_parallel, items}), or None
    while its gate has not opened."""
    key = (str(execution_id), node_id)
    with _LOCK:
        found = _CACHE.get(key)
        if found is not None:
            _CACHE.move_to_end(key)
            return found
    found = (ExecutionEvent.objects.filter(execution_id=execution_id, type=EventType.MAP_EXPANDED,
                                           data__node_id=node_id)
             .order_by("seq").values_list("data", flat=True).first())
    if found is not None:
        with _LOCK:
            _CACHE[key] = found
            while len(_CACHE) > _CACHE_SIZE:
                _CACHE.popitem(last=False)
    return found


def map_item(execution_id, node_id: str, index: int) -> Any:
    """Item `index` of the map node, as its gate recorded it; StepFailed if there is no such item."""
    expansion = map_expansion(execution_id, node_id)
    if expansion is None:
        raise StepFailed(f"map node {node_id!r} has no recorded items (its gate did not open); item {index} "
                         "cannot run", retryable=False, details={"reason": "not_expanded"})
    items = expansion.get("items") or []
    if not 0 <= index < len(items):
        raise StepFailed(f"map node {node_id!r} recorded {len(items)} items; there is no item {index}",
                         retryable=False, details={"reason": "no_such_item", "count": len(items)})
    return items[index]


def map_item_or_none(execution_id, node_id: str, index: int) -> Any:
    """`map_item`, or None when the run recorded no such item (a replay's mocked map)."""
    try:
        return map_item(execution_id, node_id, index)
    except StepFailed:
        return None


def map_item_run(execution_id, node_id: str, index: int, job: dict[str, Any],
                 context: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(job, context) item `index` of a map node runs: the child step, seeing `.item`/`.item_index`."""
    return item_job(job), item_context(context, map_item(execution_id, node_id, index), index)



def map_item_rerun(execution_id, index: int, job: dict[str, Any], config: dict[str, Any] | None,
                   context: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(spec, context) a dead letter's rerun of item `index` of map `job` runs when it is not pinned
    to the deployed artifact (an operator modified its input): the child step with `config` (what
    the item ran with, or the operator's), on its item. (A pinned rerun needs nothing: `run_attempt`
    takes the map from the artifact and runs the item as usual.)"""
    child = item_job(job)
    child.pop("artifact", None)
    if config is not None:
        child["config"] = dict(config)
    return child, item_context(context, map_item(execution_id, job["id"], index), index)
