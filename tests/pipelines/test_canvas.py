"""Canvas compiler: exact shapes for small graphs, and a simulated run proving every edge holds."""

import json
import random

import pytest

from tests.pipelines.canvas_oracle import predecessors_satisfied, unsatisfied_edges
from pipelines.canvas import (
    Barrier, CanvasNode, Chain, Chord, MergeTask, StepTask, compile_canvas, iter_tasks,
    plan_from_dict,
)


def S(node, shard=0, shards=1, group=None):
    return StepTask(node, shard, shards, group)


def replicated(node, n, group=None):
    return Chord(tuple(S(node, k, n, group) for k in range(n)), MergeTask(node, n, group))


def graph(spec, replicas=None):
    """'a>b b>c' -> (nodes, edges); nodes are every id named, replicas from the mapping."""
    edges = [tuple(pair.split(">")) for pair in spec.split()]
    ids = sorted({x for pair in spec.split() for x in pair.split(">")})
    return [CanvasNode(i, (replicas or {}).get(i, 1)) for i in ids], [e for e in edges if len(e) == 2]


# ---------------------------------------------------------------- execution simulator (independent)

def simulate(plan, rng):
    """Run the plan with Celery semantics in a random completion order.

    Returns (tasks in run order, {task: nodes complete when it became ready}).
    A chain item is ready when the previous one finished; a chord body when all header items did.
    """
    pending, ran, ready_with, complete = [], [], {}, set()

    def start(item, then):
        if isinstance(item, Chain):
            assert len(item.items) >= 2 and not any(isinstance(i, Chain) for i in item.items)
            def step(k):
                if k == len(item.items):
                    then()
                else:
                    start(item.items[k], lambda: step(k + 1))
            step(0)
        elif isinstance(item, Chord):
            assert len(item.header) >= 2
            left = [len(item.header)]
            def one():
                left[0] -= 1
                if left[0] == 0:
                    start(item.body, then)
            for sub in item.header:
                start(sub, one)
        else:
            ready_with.setdefault(item, []).append(frozenset(complete))
            pending.append((item, then))

    finished = []
    start(plan.root, lambda: finished.append(True))
    while pending:
        task, then = pending.pop(rng.randrange(len(pending)))
        ran.append(task)
        if isinstance(task, MergeTask) or (isinstance(task, StepTask) and task.shards == 1):
            complete.add(task.node)
        then()
    assert finished == [True], "the plan never finished"
    return ran, ready_with


def assert_correct(plan, nodes, edges, runs=3, seed=0):
    expected = []
    for node in nodes:
        expected += [S(node.id, k, node.replicas, node.group) for k in range(node.replicas)]
        if node.replicas > 1:
            expected.append(MergeTask(node.id, node.replicas, node.group))
    steps = [t for t in iter_tasks(plan) if not isinstance(t, Barrier)]
    assert sorted(steps, key=repr) == sorted(expected, key=repr), "each node exactly once"
    assert plan.task_count == len(list(iter_tasks(plan)))
    rng = random.Random(seed)
    for _ in range(runs):
        ran, ready_with = simulate(plan, rng)
        assert len(ran) == plan.task_count and len(set(ran)) == len(ran)
        for task in ran:
            assert len(ready_with[task]) == 1, f"{task} ran twice"
            if isinstance(task, MergeTask):
                shards = {t for t in ran[:ran.index(task)] if isinstance(t, StepTask)
                          and t.node == task.node}
                assert len(shards) == task.shards, f"merge of {task.node} before all shards"
        for u, v in edges:
            for task in ran:
                if isinstance(task, (StepTask, MergeTask)) and task.node == v:
                    assert u in ready_with[task][0], f"{task} ready before {u} completed"
    assert predecessors_satisfied(plan, edges)


def happens_before(plan):
    """{(u, v)}: node u surely completed before any task of node v becomes ready."""
    pairs, done_at = set(), {}

    def walk(item, done):
        if isinstance(item, Chain):
            for sub in item.items:
                done = walk(sub, done)
            return done
        if isinstance(item, Chord):
            return walk(item.body, frozenset().union(*(walk(sub, done) for sub in item.header)))
        if isinstance(item, Barrier):
            return done
        done_at.setdefault(item.node, []).append(done)
        return done | {item.node} if isinstance(item, MergeTask) or item.shards == 1 else done

    walk(plan.root, frozenset())
    for v, befores in done_at.items():
        pairs |= {(u, v) for u in frozenset.intersection(*befores)}
    return pairs


def reachability(nodes, edges):
    succ = {n.id: set() for n in nodes}
    for u, v in edges:
        succ[u].add(v)
    reach = set()
    for start in succ:
        stack = list(succ[start])
        while stack:
            x = stack.pop()
            if (start, x) not in reach:
                reach.add((start, x))
                stack.extend(succ[x])
    return reach


def is_series_parallel(nodes, edges):
    """N-free check on the reachability order: no a<c, a<d, b<d with a||b, b||c, c||d."""
    reach = reachability(nodes, edges)
    ids = [n.id for n in nodes]
    free = lambda x, y: (x, y) not in reach and (y, x) not in reach
    for a, d in reach:
        for c in ids:
            if (a, c) in reach and free(c, d):
                for b in ids:
                    if (b, d) in reach and free(a, b) and free(b, c):
                        return False
    return True


# ---------------------------------------------------------------------------------- named shapes

a, b, c, d, e, f = (S(x) for x in "abcdef")

SHAPES = {
    "single node": ("a", {}, a),
    "single node replicas 3": ("a", {"a": 3}, replicated("a", 3)),
    "linear chain": ("a>b b>c", {}, Chain((a, b, c))),
    "diamond": ("a>b a>c b>d c>d", {}, Chain((a, Chord((b, c), d)))),
    "nested diamonds": (
        "a>b a>e b>c c>d b>f f>d d>z e>z", {},
        Chain((a, Chord((Chain((b, Chord((c, f), d))), e), S("z")))),
    ),
    "two sources one sink": ("a>c b>c", {}, Chord((a, b), c)),
    "one source two sinks": ("a>b a>c", {}, Chain((a, Chord((b, c), Barrier("end"))))),
    "two separate chains": ("a>b c>d", {}, Chord((Chain((a, b)), Chain((c, d))), Barrier("end"))),
    "sinks inside a branch": (
        "a>b a>c d>e", {},
        Chord((Chain((a, Chord((b, c), Barrier("join-1")))), Chain((d, e))), Barrier("end")),
    ),
    "transitive edge": ("a>b b>c a>c", {}, Chain((a, b, c))),
    "complete bipartite": ("a>c a>d b>c b>d", {}, Chord((a, b), Chord((c, d), Barrier("end")))),
    "replicas on middle node": ("a>b b>c", {"b": 3}, Chain((a, replicated("b", 3), c))),
    "replicas on a fan-out branch": (
        "a>b a>c b>d c>d", {"b": 2}, Chain((a, Chord((replicated("b", 2), c), d))),
    ),
    "W shape": ("a>c a>d b>d b>e", {}, Chord((a, b), Chord((c, d, e), Barrier("end")))),
    "crossed diamonds": ("a>c a>d b>d", {}, Chord((a, b), Chord((c, d), Barrier("end")))),
    "crossed diamonds inside a chain": (
        "s>a s>b a>c a>d b>d c>t d>t", {},
        Chain((S("s"), Chord((a, b), Chord((c, d), S("t"))))),
    ),
    "W shape with replicas": (
        "a>c a>d b>d b>e", {"d": 2},
        Chord((a, b), Chord((c, replicated("d", 2), e), Barrier("end"))),
    ),
}
LAYERED = {"W shape", "crossed diamonds", "crossed diamonds inside a chain", "W shape with replicas"}


@pytest.mark.parametrize("name", list(SHAPES), ids=list(SHAPES))
def test_shape_compiles_to_expected_canvas(name):
    spec, replicas, expected = SHAPES[name]
    nodes, edges = graph(spec, replicas)
    plan = compile_canvas(nodes, edges)
    assert plan.root == expected
    assert plan.strategy == ("layered" if name in LAYERED else "series-parallel")
    assert_correct(plan, nodes, edges, runs=20)


@pytest.mark.parametrize("name", list(SHAPES), ids=list(SHAPES))
def test_plan_round_trips_through_json(name):
    spec, replicas, _ = SHAPES[name]
    plan = compile_canvas(*graph(spec, replicas))
    data = json.loads(json.dumps(plan.to_dict()))
    assert plan_from_dict(data) == plan
    assert plan_from_dict(data["root"]) == plan.root


def test_dict_form_of_a_diamond():
    plan = compile_canvas(*graph("a>b a>c b>d c>d"))
    step = lambda n: {"kind": "step", "node": n, "shard": 0, "shards": 1, "group": None}
    assert plan.to_dict() == {
        "kind": "plan", "strategy": "series-parallel", "task_count": 4,
        "root": {"kind": "chain", "items": [
            step("a"), {"kind": "chord", "header": [step("b"), step("c")], "body": step("d")},
        ]},
    }


def test_groups_are_carried_to_shards_and_merge():
    plan = compile_canvas([CanvasNode("x", replicas=2, group="ingest")], [])
    assert plan.root == replicated("x", 2, group="ingest")
    assert plan.to_dict()["root"]["body"] == {"kind": "merge", "node": "x", "shards": 2,
                                              "group": "ingest"}


def test_output_does_not_depend_on_input_order():
    nodes, edges = graph("a>b a>c b>d c>d d>e d>f g>f")
    rng = random.Random(7)
    expected = compile_canvas(nodes, edges)
    for _ in range(10):
        rng.shuffle(nodes)
        rng.shuffle(edges)
        assert compile_canvas(nodes, edges) == expected


def test_checker_catches_a_wrong_plan():
    nodes, edges = graph("a>b")
    plan = compile_canvas(nodes, [])  # compiled without the edge: a and b run in parallel
    assert unsatisfied_edges(plan, edges) == [("a", "b")]
    assert not predecessors_satisfied(plan, edges)


def test_long_shapes_compile():
    chain = [CanvasNode(f"n{i:04d}") for i in range(2000)]
    plan = compile_canvas(chain, [(x.id, y.id) for x, y in zip(chain, chain[1:])])
    assert isinstance(plan.root, Chain) and len(plan.root.items) == 2000
    fan = [CanvasNode("src"), CanvasNode("sink")] + [CanvasNode(f"m{i:03d}") for i in range(100)]
    fan_edges = [("src", n.id) for n in fan[2:]] + [(n.id, "sink") for n in fan[2:]]
    plan = compile_canvas(fan, fan_edges)
    assert plan.root == Chain((S("src"), Chord(tuple(S(n.id) for n in fan[2:]), S("sink"))))


@pytest.mark.parametrize("nodes, edges, culprit", [
    ([], [], "empty"),
    ([CanvasNode("a"), CanvasNode("b")], [("a", "b"), ("b", "a")], "a -> b -> a"),
    ([CanvasNode("a")], [("a", "a")], "a -> a"),
    ([CanvasNode("a")], [("a", "ghost")], "'ghost'"),
    ([CanvasNode("a"), CanvasNode("a")], [], "duplicate"),
    ([CanvasNode("a", replicas=0)], [], "replicas=0"),
], ids=["empty", "cycle", "self loop", "unknown node", "duplicate id", "zero replicas"])
def test_bad_input_raises_value_error(nodes, edges, culprit):
    with pytest.raises(ValueError, match=culprit):
        compile_canvas(nodes, edges)


@pytest.mark.parametrize("data", [{"kind": "group"}, {"kind": "step", "node": "a"}, {}],
                         ids=["unknown kind", "missing field", "no kind"])
def test_plan_from_dict_rejects_garbage(data):
    with pytest.raises(ValueError):
        plan_from_dict(data)


# ------------------------------------------------------------------------------------ randomized

def random_dag(rng, n, density):
    ids = [f"n{i:02d}" for i in range(n)]
    nodes = [CanvasNode(i, rng.choice([1, 1, 1, 2, 3]), rng.choice([None, "g1", "g2"]))
             for i in ids]
    edges = [(ids[i], ids[j]) for i in range(n) for j in range(i + 1, n) if rng.random() < density]
    rng.shuffle(nodes)
    return nodes, edges


def random_series_parallel(rng, n, counter):
    """A random SP graph on n fresh nodes: (node ids, edges, sources, sinks)."""
    if n == 1:
        counter[0] += 1
        x = f"v{counter[0]:02d}"
        return [x], [], [x], [x]
    k = rng.randint(1, n - 1)
    left, right = random_series_parallel(rng, k, counter), random_series_parallel(rng, n - k, counter)
    ids, edges = left[0] + right[0], left[1] + right[1]
    if rng.random() < 0.5:
        return ids, edges, left[2] + right[2], left[3] + right[3]
    return ids, edges + [(s, t) for s in left[3] for t in right[2]], left[2], right[3]


@pytest.mark.parametrize("seed", range(6), ids=[f"randomized dag seed {s}" for s in range(6)])
def test_randomized_dags_respect_every_edge(seed):
    rng = random.Random(seed)
    strategies = set()
    for _ in range(60):
        nodes, edges = random_dag(rng, rng.randint(1, 15), rng.choice([0.1, 0.2, 0.35, 0.6]))
        plan = compile_canvas(nodes, edges)
        strategies.add(plan.strategy)
        assert_correct(plan, nodes, edges, seed=seed)
        exact = happens_before(plan) == reachability(nodes, edges)
        assert exact == (plan.strategy == "series-parallel") == is_series_parallel(nodes, edges)
        assert plan_from_dict(json.loads(json.dumps(plan.to_dict()))) == plan
    assert strategies == {"series-parallel", "layered"}


@pytest.mark.parametrize("seed", range(4), ids=[f"randomized series-parallel seed {s}"
                                                 for s in range(4)])
def test_randomized_series_parallel_graphs_map_exactly(seed):
    rng = random.Random(100 + seed)
    for _ in range(50):
        ids, edges, _, _ = random_series_parallel(rng, rng.randint(1, 15), [0])
        reach = sorted(reachability([CanvasNode(i) for i in ids], edges))
        edges += rng.sample(reach, k=min(len(reach), 2))  # transitive extras change nothing
        nodes = [CanvasNode(i, rng.choice([1, 1, 2])) for i in ids]
        plan = compile_canvas(nodes, edges)
        assert plan.strategy == "series-parallel"
        assert happens_before(plan) == reachability(nodes, edges)
        assert_correct(plan, nodes, edges, runs=2, seed=seed)
