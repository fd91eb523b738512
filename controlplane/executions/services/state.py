"""The engine's view of a run in this process: its pinned graph (typed, parsed once) and context.

The rules themselves are pure and live in `pipelines.engine`; the per-process cache of each run's
`ExecutionGraph` and unchanging fields lives with the store's reads (`store.pinned_graph`); this
module adapts them for the services (claim reads, the template context of a loaded execution).
"""
from __future__ import annotations

from typing import Any

from controlplane.executions.models import Execution
from controlplane.executions.store import (  # noqa: F401  (the cache lives with the reads; names kept here)
    _PINNED_CACHE,
    RUN_FACT_FIELDS,
    PinnedGraph,
    cached_pinned_graph,
    pinned_graph,
    remember_run,
)
from pipelines.engine import Snapshot
from pipelines.engine import history
from pipelines.engine.history import ClaimReads, claim_reads as _claim_reads


def claim_reads(pinned: PinnedGraph, node_id: str, *, with_outputs: bool) -> ClaimReads:
    return _claim_reads(pinned.graph, node_id, with_outputs=with_outputs)


def template_context(execution: Execution, snapshot: Snapshot, *, with_steps: bool = True) -> dict[str, Any]:
    """`{trigger, params, steps: {id: {output}}, execution}` of a loaded execution."""
    graph = pinned_graph(execution.pk, execution.graph).graph
    return history.template_context(graph, snapshot.attempts, execution_id=execution.pk,
                                    trigger_input=execution.input, trigger=execution.trigger,
                                    started_at=execution.started_at, with_steps=with_steps)
