"""A map node at run time: its items, its lanes, the canvas of its shards, what one item runs.

When the run reaches a map node (a gate: `segments`), `expand_items` renders its ``items`` from
the run's recorded context and checks them; the node then has one shard per item, known only now,
so the count is recorded with the shards themselves (every attempt row carries ``shard_count``;
`history.shard_total` reads it back). `map_plan` is the canvas of those shards:

    items 0..6, max_parallel 3     Chord(header=(Chain(#0, #3, #6), Chain(#1, #4), Chain(#2, #5)),
                                         body=Merge(node, 7))

Item i runs in lane i % max_parallel and each lane is a chain, so at most ``max_parallel`` items
run at once without a scheduler of our own: a retry of an item is a retry of its task, which its
chain waits for. The join is the replicated nodes' merge (`MergeTask`): the node is complete once
every item is recorded, and its output is the list of item outputs in item order
(`history.node_output`). An empty list has no shard at all: the merge alone runs, with ``[]``.

`item_job` / `item_context` are what shard i runs: the child step with the node's retry, time
limit and compensation, its templates seeing ``.item`` and ``.item_index``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

from pipelines.canvas import Chain, Chord, MergeTask, PlanItem, StepTask
from pipelines.errors import PipelineError, StepFailed
from pipelines.steps import get_step_type
from pipelines.steps.map import DEFAULT_MAX_ITEMS, DEFAULT_MAX_PARALLEL, MAP_TYPE, MAX_PARALLEL
from pipelines.templating import find_templates, render
from pipelines.value_types import json_type

INVALID_MAP_ITEMS = "invalid_map_items"
# The keys rendered when the gate opens; the child step is rendered per item, with `.item`.
_GATE_KEYS = ("items", "max_parallel", "max_items")


def is_map(job_type: str | None) -> bool:
    return job_type == MAP_TYPE


@dataclass(frozen=True, slots=True)
class Expansion:
    """A map node's items as rendered when its gate opened, and how many may run at once."""

    items: list[Any]
    max_parallel: int

    @property
    def count(self) -> int:
        return len(self.items)


def expand_items(config: Mapping[str, Any], context: Mapping[str, Any], *, max_items: int = DEFAULT_MAX_ITEMS,
                 max_parallel: int = MAX_PARALLEL, deadline_s: float | None = None) -> Expansion:
    """Render a map config's ``items`` (and limits) against the run's `context` and check them.

    `max_items` / `max_parallel`: the control plane's ceilings; a config asks for less, never more.
    Raises ``StepFailed`` (not retryable: the recorded context does not change) with code
    ``invalid_map_items`` for a value that is not a list or a list over the limit, naming both,
    and ``TemplateError`` for a template that fails.
    """
    rendered = render({key: config[key] for key in _GATE_KEYS if key in config}, dict(context),
                      deadline_s=deadline_s)
    items = rendered.get("items")
    if not isinstance(items, list):
        raise StepFailed(f"config.items rendered to {json_type(items)}, not a list; the map needs a list "
                         f"(template: {_short(config.get('items'))})", retryable=False, code=INVALID_MAP_ITEMS,
                         details={"reason": "not_a_list", "path": "config.items", "type": json_type(items)})
    limit = _bounded(rendered.get("max_items"), "max_items", max_items, max_items)
    if len(items) > limit:
        raise StepFailed(f"config.items rendered to {len(items)} items, over the map's maximum of {limit}; "
                         "narrow the list upstream or raise max_items (at most FLOWPLANE_MAP_MAX_ITEMS="
                         f"{max_items})", retryable=False, code=INVALID_MAP_ITEMS,
                         details={"reason": "too_many", "path": "config.items", "count": len(items),
                                  "max_items": limit})
    parallel = _bounded(rendered.get("max_parallel"), "max_parallel", DEFAULT_MAX_PARALLEL, max_parallel)
    return Expansion(items, parallel)


def _bounded(value: Any, key: str, default: int, ceiling: int) -> int:
    """A rendered limit: an int >= 1 (None: the default), capped at the control plane's ceiling."""
    if value is None:
        return min(default, ceiling)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise StepFailed(f"config.{key} rendered to {value!r}; it must be an integer >= 1", retryable=False,
                         code=INVALID_MAP_ITEMS, details={"reason": "invalid_limit", "path": f"config.{key}"})
    return min(value, ceiling)


def lanes(count: int, max_parallel: int) -> list[list[int]]:
    """Item indices by lane: item i in lane i % L, L = min(max_parallel, count) lanes, each in order."""
    if max_parallel < 1:
        raise ValueError(f"max_parallel must be >= 1, got {max_parallel!r}")
    width = min(max_parallel, count)
    return [list(range(lane, count, width)) for lane in range(width)]


def map_plan(node_id: str, count: int, max_parallel: int, group: str | None = None) -> PlanItem:
    """The canvas of a map node's `count` items in lanes, joined by its merge (module docstring)."""
    join = MergeTask(node_id, count, group)
    if count == 0:
        return join
    chains: list[PlanItem] = []
    for lane in lanes(count, max_parallel):
        tasks = tuple(StepTask(node_id, index, count, group) for index in lane)
        chains.append(tasks[0] if len(tasks) == 1 else Chain(tasks))
    if len(chains) == 1:
        only = chains[0]
        return Chain((*(only.items if isinstance(only, Chain) else (only,)), join))
    return Chord(tuple(chains), join)


def item_job(job: Mapping[str, Any]) -> dict[str, Any]:
    """What a map node's item runs: the node's job (retry, time limit, compensation, group) with the
    child step's type and config in place of the map's."""
    step = (job.get("config") or {}).get("step") or {}
    if not isinstance(step, Mapping) or not isinstance(step.get("type"), str):
        raise StepFailed(f"map node {job.get('id')!r} has no child step (config.step.type)", retryable=False)
    return {**job, "type": step["type"], "config": dict(step.get("config") or {})}


# A template that is one of these plain paths reads nothing an item's claim would have to load:
# the item, and what every claim has (trigger, params, the run, the shard).
_CLAIMED_PATH = re.compile(r'^\.(item|item_index|trigger|params|execution|shard)'
                           r'(\.[A-Za-z_][A-Za-z0-9_]*|\[[0-9]+\]|\["[^"\\]*"\])*$')


def item_reads_upstream(job: Mapping[str, Any]) -> bool:
    """Whether an item of map `job` needs the run's upstream outputs: its child step's type reads
    the context itself, or one of its templates is more than a plain path into the item, trigger,
    params or run. Otherwise an item's claim loads statuses only, not every recorded output
    (with each of its siblings'), which for a long list of large items is most of its cost."""
    try:
        child = item_job(job)
        if get_step_type(child["type"]).reads_context:
            return True
        return any(not _CLAIMED_PATH.match(expr.strip()) for _, expr in find_templates(child["config"]))
    except PipelineError:
        return True  # it fails when it runs; reading more is the safe side


def item_context(context: Mapping[str, Any], item: Any, index: int) -> dict[str, Any]:
    """The run's context with the item (``.item``) and its index (``.item_index``)."""
    return {**context, "item": item, "item_index": index}


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."
