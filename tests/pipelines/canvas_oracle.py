"""A test oracle for compiled canvases: which edges a plan could violate.

It walks the plan the way Celery runs it, independently of the compiler, so the canvas tests can
check every edge of random graphs. Test code only: the product never needs it.
"""
from __future__ import annotations

from typing import Sequence

from pipelines.canvas import Barrier, CanvasPlan, Chain, Chord, MergeTask, PlanItem, StepTask


def unsatisfied_edges(plan: CanvasPlan, edges: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """Edges (u, v) where some task of v may start before u completed (its merge, if replicated)."""
    before: dict[str, set[str]] = {}  # node -> nodes surely complete when any of its tasks starts

    def walk(item: PlanItem, done: frozenset[str]) -> frozenset[str]:
        if isinstance(item, Chain):
            for sub in item.items:
                done = walk(sub, done)
            return done
        if isinstance(item, Chord):
            joined = frozenset().union(*(walk(sub, done) for sub in item.header))
            return walk(item.body, joined)
        if isinstance(item, Barrier):
            return done
        if isinstance(item, StepTask):
            known = before.setdefault(item.node, set(done))
            known &= done
        if isinstance(item, MergeTask) or item.shards == 1:
            return done | {item.node}
        return done

    walk(plan.root, frozenset())
    return [(u, v) for u, v in edges if u not in before.get(v, ())]


def predecessors_satisfied(plan: CanvasPlan, edges: Sequence[tuple[str, str]]) -> bool:
    """True when every edge's target starts only after its source completed."""
    return not unsatisfied_edges(plan, edges)
