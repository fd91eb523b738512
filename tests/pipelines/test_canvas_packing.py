"""Packing a wide chord header's parts into fewer tasks (`pack_headers`): exact shapes, bad input,
and on random DAGs that every node still runs exactly once and every edge holds."""

import json
import random
from collections import Counter

import pytest

from pipelines.canvas import (
    CanvasNode, Chain, Chord, MergeTask, StepsTask, StepTask, compile_canvas, fuse_steps, iter_tasks, pack_headers,
    plan_from_dict,
)
from tests.pipelines.canvas_oracle import predecessors_satisfied
from tests.pipelines.test_canvas import graph, random_dag
from tests.pipelines.test_canvas_fusion import S, _chains_are_well_formed, unfuse


def fan_out(width, group=None, **replicas):
    nodes = [CanvasNode("start", 1, group), CanvasNode("join", 1, group)]
    nodes += [CanvasNode(f"b{i:02d}", replicas.get(f"b{i:02d}", 1), group) for i in range(width)]
    edges = [("start", f"b{i:02d}") for i in range(width)] + [(f"b{i:02d}", "join") for i in range(width)]
    return nodes, edges


def every_node(nodes):
    return {n.id for n in nodes}


def test_a_wide_header_becomes_parts_slices_in_header_order():
    nodes, edges = fan_out(10)
    plan = pack_headers(compile_canvas(nodes, edges), every_node(nodes), parts=4)
    chord = plan.root.items[1]
    assert plan.root.items[0] == S("start") and chord.body == S("join")
    assert chord.header == (StepsTask(("b00", "b01", "b02")), StepsTask(("b03", "b04", "b05")),
                            StepsTask(("b06", "b07")), StepsTask(("b08", "b09")))
    assert plan.task_count == 6
    assert plan_from_dict(json.loads(json.dumps(plan.to_dict()))) == plan


def test_a_header_of_at_most_parts_packable_parts_is_unchanged():
    nodes, edges = fan_out(4)
    plain = compile_canvas(nodes, edges)
    assert pack_headers(plain, every_node(nodes), parts=4) == plain


def test_only_packable_single_shard_steps_of_one_group_are_packed_together():
    nodes, edges = fan_out(6, b00=3)  # b00 is replicated: its own chord of shards and a merge
    packable = every_node(nodes) - {"b01"}
    on_two = [CanvasNode(n.id, n.replicas, "g2" if n.id in ("b04", "b05") else "g1") for n in nodes]
    header = pack_headers(compile_canvas(on_two, edges), packable, parts=2).root.items[1].header
    assert isinstance(header[0], Chord) and header[0].body == MergeTask("b00", 3, "g1")
    # g1 has two packable parts (b02, b03), g2 two (b04, b05): neither more than parts.
    assert header[1:] == (S("b01", "g1"), S("b02", "g1"), S("b03", "g1"), S("b04", "g2"), S("b05", "g2"))
    on_one = [CanvasNode(n.id, n.replicas, "g1") for n in nodes]
    header = pack_headers(compile_canvas(on_one, edges), packable, parts=2).root.items[1].header
    assert isinstance(header[0], Chord)
    assert header[1:] == (S("b01", "g1"), StepsTask(("b02", "b03"), "g1"), StepsTask(("b04", "b05"), "g1"))


def test_fused_branches_are_packed_whole_and_in_order():
    nodes, edges = graph("s>a1 a1>a2 s>b1 b1>b2 s>c1 a2>j b2>j c1>j")
    fusible = every_node(nodes)
    plan = pack_headers(fuse_steps(compile_canvas(nodes, edges), fusible), fusible, parts=2)
    assert plan.root == Chain((S("s"), Chord((StepsTask(("a1", "a2", "b1", "b2")), S("c1")),
                                             S("j"))))
    assert predecessors_satisfied(unfuse(plan), edges)


def test_nested_chords_are_packed_too():
    width = 5
    spec = " ".join([f"s>x{i} x{i}>m" for i in range(width)] + [f"m>y{i} y{i}>e" for i in range(width)])
    nodes, edges = graph(spec)
    plan = pack_headers(compile_canvas(nodes, edges), every_node(nodes), parts=2)
    tasks = list(iter_tasks(plan))
    assert Counter(type(t).__name__ for t in tasks) == Counter({"StepTask": 3, "StepsTask": 4})
    assert predecessors_satisfied(unfuse(plan), edges)


@pytest.mark.parametrize("parts", [1, 0, -3, 2.5, "4"], ids=repr)
def test_parts_below_two_or_not_an_int_is_refused(parts):
    nodes, edges = fan_out(3)
    with pytest.raises(ValueError, match="at least 2 parts"):
        pack_headers(compile_canvas(nodes, edges), every_node(nodes), parts=parts)


def test_a_very_wide_fan_out_packs_in_linear_shape():
    nodes, edges = fan_out(2000)
    plan = pack_headers(compile_canvas(nodes, edges), every_node(nodes), parts=16)
    header = plan.root.items[1].header
    assert len(header) == 16 and sorted(len(part.nodes) for part in header) == [125] * 16
    assert [n for part in header for n in part.nodes] == sorted(f"b{i:02d}" for i in range(2000))


@pytest.mark.parametrize("seed", range(4), ids=[f"randomized packing seed {s}" for s in range(4)])
def test_packing_runs_every_node_once_and_keeps_every_edge(seed):
    rng = random.Random(900 + seed)
    packed_somewhere = False
    for _ in range(80):
        nodes, edges = random_dag(rng, rng.randint(1, 18), rng.choice([0.05, 0.1, 0.35, 0.6]))
        groups = rng.choice([[None], ["g1", "g2"]])
        nodes = [CanvasNode(n.id, n.replicas, rng.choice(groups)) for n in nodes]
        packable = {n.id for n in nodes if rng.random() < 0.8}
        plain = fuse_steps(compile_canvas(nodes, edges), packable)
        plan = pack_headers(plain, packable, parts=rng.randint(2, 4))
        assert plan.task_count == len(list(iter_tasks(plan)))
        assert plan_from_dict(json.loads(json.dumps(plan.to_dict()))) == plan
        ran = Counter((t.node, t.shard) for t in iter_tasks(unfuse(plan)) if isinstance(t, StepTask))
        assert ran == Counter((t.node, t.shard) for t in iter_tasks(unfuse(plain)) if isinstance(t, StepTask))
        assert all(n == 1 for n in ran.values())
        by_id = {n.id: n for n in nodes}
        for task in iter_tasks(plan):
            if isinstance(task, StepsTask):
                packed_somewhere |= task not in set(iter_tasks(plain))
                assert set(task.nodes) <= packable
                assert {(by_id[n].replicas, by_id[n].group) for n in task.nodes} == {(1, task.group)}
        assert predecessors_satisfied(unfuse(plan), edges)
        assert _chains_are_well_formed(plan.root)
    assert packed_somewhere
