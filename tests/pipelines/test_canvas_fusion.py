"""Fusing consecutive chain steps into one task (`fuse_steps`): exact shapes, and on random DAGs
that expanding every fused task back into a chain gives the unfused plan again (so every edge
holds exactly as before)."""

import json
import random

import pytest

from pipelines.canvas import (
    Barrier, CanvasNode, CanvasPlan, Chain, Chord, MergeTask, StepsTask, StepTask, compile_canvas, fuse_steps,
    iter_tasks, plan_from_dict,
)
from tests.pipelines.canvas_oracle import predecessors_satisfied
from tests.pipelines.test_canvas import graph, random_dag


def S(node, group=None):
    return StepTask(node, 0, 1, group)


def unfuse(item):
    """Each StepsTask as the chain of its steps, flattened into an enclosing chain."""
    if isinstance(item, CanvasPlan):
        return CanvasPlan(unfuse(item.root), item.strategy, sum(1 for _ in iter_tasks(unfuse(item.root))))
    if isinstance(item, StepsTask):
        return Chain(tuple(S(node, item.group) for node in item.nodes))
    if isinstance(item, Chord):
        return Chord(tuple(unfuse(sub) for sub in item.header), unfuse(item.body))
    if isinstance(item, Chain):
        items = []
        for sub in item.items:
            sub = unfuse(sub)
            items.extend(sub.items if isinstance(sub, Chain) else [sub])
        return Chain(tuple(items))
    return item


def test_a_chain_of_fusible_steps_is_one_task():
    nodes, edges = graph("a>b b>c c>d")
    plan = fuse_steps(compile_canvas(nodes, edges), {"a", "b", "c", "d"})
    assert plan.root == StepsTask(("a", "b", "c", "d"))
    assert plan.task_count == 1
    assert plan.to_dict()["root"] == {"kind": "steps", "nodes": ["a", "b", "c", "d"], "group": None}


def test_only_runs_of_two_or_more_fusible_steps_on_one_group_are_fused():
    nodes = [CanvasNode("a", 1, "g1"), CanvasNode("b", 1, "g1"), CanvasNode("c", 1, "g2"),
             CanvasNode("d", 1, "g2"), CanvasNode("e", 1, "g2"), CanvasNode("f", 1, "g2"), CanvasNode("g", 1, "g2")]
    edges = [("a", "b"), ("b", "c"), ("c", "d"), ("d", "e"), ("e", "f"), ("f", "g")]
    plan = fuse_steps(compile_canvas(nodes, edges), {"a", "b", "c", "d", "f"})
    assert plan.root == Chain((StepsTask(("a", "b"), "g1"), StepsTask(("c", "d"), "g2"), S("e", "g2"),
                               S("f", "g2"), S("g", "g2")))


def test_chord_parts_merges_and_replicated_nodes_are_not_fused():
    nodes, edges = graph("a>b a>c b>d c>d d>e e>f", {"e": 2})
    plain = compile_canvas(nodes, edges)
    fused = fuse_steps(plain, {"a", "b", "c", "d", "e", "f"})
    assert fused == plain  # each chain holds one step: a, then a chord whose body is d, e#, f


def test_fan_out_keeps_its_chord_and_fuses_the_branches_chains():
    nodes, edges = graph("s>a1 a1>a2 s>b1 b1>b2 a2>j b2>j j>k")
    plan = fuse_steps(compile_canvas(nodes, edges), {"s", "a1", "a2", "b1", "b2", "j", "k"})
    assert plan.root == Chain((S("s"), Chord((StepsTask(("a1", "a2")), StepsTask(("b1", "b2"))),
                                             StepsTask(("j", "k")))))


def test_nothing_fusible_changes_nothing():
    plain = compile_canvas(*graph("a>b b>c"))
    assert fuse_steps(plain, ()) == plain


@pytest.mark.parametrize("data", [{"kind": "steps", "nodes": [], "group": None}, {"kind": "steps"},
                                  {"kind": "steps", "nodes": [1, 2]}], ids=["no nodes", "missing", "not ids"])
def test_malformed_steps_are_rejected(data):
    with pytest.raises(ValueError):
        plan_from_dict(data)


@pytest.mark.parametrize("seed", range(4), ids=[f"randomized fusion seed {s}" for s in range(4)])
def test_fusion_only_groups_consecutive_chain_steps(seed):
    rng = random.Random(500 + seed)
    fused_somewhere = False
    for _ in range(80):
        nodes, edges = random_dag(rng, rng.randint(1, 15), rng.choice([0.1, 0.35, 0.6, 0.9]))
        fusible = {n.id for n in nodes if rng.random() < 0.7}
        plain = compile_canvas(nodes, edges)
        plan = fuse_steps(plain, fusible)
        assert unfuse(plan) == plain
        assert plan.task_count == len(list(iter_tasks(plan)))
        assert plan_from_dict(json.loads(json.dumps(plan.to_dict()))) == plan
        by_id = {n.id: n for n in nodes}
        for task in iter_tasks(plan):
            if isinstance(task, StepsTask):
                fused_somewhere = True
                assert len(task.nodes) >= 2 and set(task.nodes) <= fusible
                assert {(by_id[n].replicas, by_id[n].group) for n in task.nodes} == {(1, task.group)}
        assert predecessors_satisfied(unfuse(plan), edges)
        assert _chains_are_well_formed(plan.root)
    assert fused_somewhere


def _chains_are_well_formed(item) -> bool:
    if isinstance(item, Chain):
        return len(item.items) >= 2 and not any(isinstance(i, Chain) for i in item.items) \
            and all(_chains_are_well_formed(i) for i in item.items)
    if isinstance(item, Chord):
        return len(item.header) >= 2 and all(_chains_are_well_formed(i) for i in (*item.header, item.body))
    return isinstance(item, (StepTask, StepsTask, MergeTask, Barrier))
