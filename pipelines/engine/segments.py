"""Gates cut a run's graph into segments: the canvas of one segment is published at a time.

A *gate* is a node the canvas cannot run as a task: an `approval` waits for a person, a `map`
learns its list only when its upstream outputs are recorded. Neither may hold a Celery message
or a worker slot while it waits, so the compiled canvas stops before each gate and the control
plane publishes what follows once the gate opens.

The rule: the *gate depth* d(n) of a node is the largest number of gate nodes on any path from a
root to n, n included when it is a gate. Segment k holds the non-gate nodes of depth k; its
`gates` are the gate nodes of depth k (segment 0 has none). Segment k+1 starts when all of
segment k completed and all gates of segment k+1 are resolved::

    plan -> approve -> apply -> test        segment 0: plan
                                            segment 1: gates (approve,), nodes (apply, test)

    a -> g1 -> b                            segment 0: a, c
    c -------> d                            segment 1: gates (g1,), nodes (b,)
                                            (d has depth 0: it runs in segment 0, with a and c)

Every edge holds: an edge into a gate raises the depth, an edge out of a gate never lowers it,
and a gate of segment k+1 depends only on segments <= k. The cost, as for the canvas's layered
fallback: a gate waits for its whole previous segment, not only for its own predecessors (in
`a -> g1, c -> slow`, g1 is asked only once `slow` finished too), and a node after a gate waits
for every gate of its segment. A graph without gates is one segment. Segments may be empty (a
gate first, two gates in a row, a gate last): an empty segment has gates and no nodes.
"""
from __future__ import annotations

import graphlib
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipelines.canvas import CanvasNode, compile_canvas, fuse_steps, pack_headers

__all__ = ["GATE_TYPES", "Segment", "compile_segments", "current_segment", "split_segments"]

GATE_TYPES = frozenset({"approval", "map"})


@dataclass(frozen=True)
class Segment:
    """Segment `index`: the gates that open it and the non-gate nodes it runs (in graph order)."""

    index: int
    gates: tuple[str, ...]
    nodes: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "gates": list(self.gates), "nodes": list(self.nodes)}


def _id_and_type(job: Any) -> tuple[str, str]:
    if isinstance(job, Mapping):
        return job["id"], job.get("type") or ""
    return job.id, getattr(job, "type", "") or ""


def _ends(edge: Any) -> tuple[str, str]:
    if isinstance(edge, Mapping):
        return edge["from"], edge["to"]
    source = getattr(edge, "source", None)
    if source is not None:
        return source, edge.target
    return edge[0], edge[1]


def split_segments(jobs: Sequence[Any], edges: Iterable[Any],
                   gate_types: Collection[str] = GATE_TYPES) -> tuple[Segment, ...]:
    """The segments of a DAG. `jobs`: dicts with `id` and `type` (an execution graph's jobs) or
    objects with those attributes; `edges`: `{from, to}` dicts, `(from, to)` pairs or `Edge`s.

    Raises ValueError naming the culprit on an edge to an unknown node or a cycle.
    """
    order = [_id_and_type(job) for job in jobs]
    types = dict(order)
    if len(types) != len(order):
        seen: set[str] = set()
        dupes = sorted({node for node, _ in order if node in seen or seen.add(node)})
        raise ValueError(f"duplicate node ids {dupes}; node ids must be unique")
    sorter: graphlib.TopologicalSorter = graphlib.TopologicalSorter({node: () for node in types})
    preds: dict[str, list[str]] = {node: [] for node in types}
    for edge in edges:
        source, target = _ends(edge)
        for end in (source, target):
            if end not in types:
                raise ValueError(f"edge {source!r} -> {target!r} names unknown node {end!r}; "
                                 "add the node or remove the edge")
        preds[target].append(source)
        sorter.add(target, source)
    try:
        topological = list(sorter.static_order())
    except graphlib.CycleError as exc:
        raise ValueError(f"graph has a cycle {' -> '.join(exc.args[1])}; remove one of its edges") from None
    depth: dict[str, int] = {}
    for node in topological:
        own = 1 if types[node] in gate_types else 0
        depth[node] = own + max((depth[p] for p in preds[node]), default=0)
    count = 1 + max(depth.values(), default=0)
    gates: list[list[str]] = [[] for _ in range(count)]
    nodes: list[list[str]] = [[] for _ in range(count)]
    for node, kind in order:  # the caller's order (a run's jobs come in run order)
        (gates if kind in gate_types else nodes)[depth[node]].append(node)
    return tuple(Segment(k, tuple(gates[k]), tuple(nodes[k])) for k in range(count))


def current_segment(segments: Sequence[Segment], done: Callable[[str], bool]) -> Segment | None:
    """The first segment with a gate or node not `done` (recorded succeeded or skipped); None when
    every one is: the run may finish."""
    for segment in segments:
        if not all(done(node) for node in (*segment.gates, *segment.nodes)):
            return segment
    return None


def compile_segments(jobs: Sequence[Mapping[str, Any]], edges: Sequence[Mapping[str, Any]], *,
                     fusible: Collection[str] = (), header_parts: int | None = None,
                     gate_types: Collection[str] = GATE_TYPES) -> dict[str, Any]:
    """The canvas plan dict of a run's graph (`jobs` and `edges` as an execution graph holds them).

    Without gates: exactly `compile_canvas` (then `fuse_steps`, then `pack_headers` into
    `header_parts` parts when given)'s plan dict. With gates, the same
    top-level keys for the first segment that has nodes (`root` None when none has), plus
    `segments`: `[{index, gates, nodes, plan}]`, each `plan` the plan dict of that segment's nodes
    alone (None for an empty segment); the edges between segments are kept by running them in
    order. `task_count` counts every segment's tasks; `strategy` is "layered" if any segment is.
    """
    segments = split_segments(jobs, edges, gate_types)
    by_id = {job["id"]: job for job in jobs}
    pairs = [(edge["from"], edge["to"]) for edge in edges]

    def plan_of(node_ids: Sequence[str]) -> dict[str, Any] | None:
        if not node_ids:
            return None
        inside = set(node_ids)
        plan = compile_canvas([CanvasNode(n, by_id[n]["replicas"], by_id[n]["group"]) for n in node_ids],
                              [(a, b) for a, b in pairs if a in inside and b in inside])
        plan = fuse_steps(plan, fusible)
        if header_parts is not None:
            plan = pack_headers(plan, fusible, parts=header_parts)
        return plan.to_dict()

    if len(segments) == 1:
        return plan_of(segments[0].nodes) or {}
    plans = [plan_of(segment.nodes) for segment in segments]
    compiled = [plan for plan in plans if plan is not None]
    first = compiled[0] if compiled else {"kind": "plan", "strategy": "series-parallel", "task_count": 0, "root": None}
    return {
        **first,
        "strategy": "layered" if any(p["strategy"] == "layered" for p in compiled) else "series-parallel",
        "task_count": sum(p["task_count"] for p in compiled),
        "segments": [{**segment.to_dict(), "plan": plan} for segment, plan in zip(segments, plans)],
    }
