"""The engine's view of a run in this process: its pinned graph (typed, parsed once) and snapshots.

The rules themselves are pure and live in `pipelines.engine`; this module keeps what the Django
side adds: a per-process cache of each run's `ExecutionGraph` and unchanging fields (the pinned
graph is written once when a run starts and never changes, so it is parsed once, not on every
step), and the template context of a loaded execution.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any

from controlplane.executions.models import Execution
from pipelines.engine import ExecutionGraph, Snapshot
from pipelines.engine import history
from pipelines.engine.history import ClaimReads, claim_reads as _claim_reads

# Fields of a run that never change once it started: with the pinned graph, all that running a
# step needs besides the run's status and its step runs.
RUN_FACT_FIELDS = ("company_id", "deployment_id", "version_id", "environment", "trigger", "input", "started_at")


class PinnedGraph:
    """A run's pinned graph: the stored dict (`raw`, with `jobs`, the stored job dicts by id, which
    steps run from), its typed form (`graph`), and once known the run's unchanging fields
    (`facts`, see `remember_run`)."""

    __slots__ = ("raw", "graph", "jobs", "facts")

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw
        self.graph = ExecutionGraph.from_dict(raw)
        self.jobs = {job["id"]: job for job in raw.get("jobs", [])}
        self.facts: dict[str, Any] | None = None


_PINNED_CACHE: OrderedDict[str, PinnedGraph] = OrderedDict()
_PINNED_CACHE_SIZE = 512


def cached_pinned_graph(execution_id) -> PinnedGraph | None:
    """The run's pinned graph if this process has parsed it already, else None (no query)."""
    return _PINNED_CACHE.get(str(execution_id))


def pinned_graph(execution_id, raw: dict[str, Any] | None = None) -> PinnedGraph:
    """The run's pinned graph, parsed once per process (it is immutable once the run starts)."""
    key = str(execution_id)
    pinned = _PINNED_CACHE.get(key)
    if pinned is not None:
        _PINNED_CACHE.move_to_end(key)
        return pinned
    if raw is None:
        raw = Execution.objects.values_list("graph", flat=True).get(pk=execution_id)
    pinned = PinnedGraph(raw)
    _PINNED_CACHE[key] = pinned
    if len(_PINNED_CACHE) > _PINNED_CACHE_SIZE:
        _PINNED_CACHE.popitem(last=False)
    return pinned


def remember_run(execution: Execution) -> PinnedGraph:
    """Cache the run's pinned graph and unchanging fields from a fully loaded `execution`."""
    pinned = pinned_graph(execution.pk, execution.graph)
    if pinned.facts is None:
        pinned.facts = {name: getattr(execution, name) for name in RUN_FACT_FIELDS}
    return pinned


def claim_reads(pinned: PinnedGraph, node_id: str, *, with_outputs: bool) -> ClaimReads:
    return _claim_reads(pinned.graph, node_id, with_outputs=with_outputs)


def template_context(execution: Execution, snapshot: Snapshot, *, with_steps: bool = True) -> dict[str, Any]:
    """`{trigger, params, steps: {id: {output}}, execution}` of a loaded execution."""
    graph = pinned_graph(execution.pk, execution.graph).graph
    return history.template_context(graph, snapshot.attempts, execution_id=execution.pk,
                                    trigger_input=execution.input, trigger=execution.trigger,
                                    started_at=execution.started_at, with_steps=with_steps)
