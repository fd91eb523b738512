"""The widest set of jobs that may run at once: checked against brute force on small graphs."""

import itertools
import random

import pytest

from pipelines.concurrency import widest_concurrent


def reaches(edges):
    """job -> every job a path leads to."""
    succ = {}
    for a, b in edges:
        succ.setdefault(a, set()).add(b)
    out = {}

    def walk(n):
        if n not in out:
            out[n] = set()
            for m in succ.get(n, ()):
                out[n] |= {m} | walk(m)
        return out[n]

    for n in {x for e in edges for x in e}:
        walk(n)
    return out


def brute_force(weights, edges):
    after = reaches(edges)
    best = 0
    jobs = sorted(weights)
    for size in range(len(jobs) + 1):
        for subset in itertools.combinations(jobs, size):
            if all(b not in after.get(a, ()) and a not in after.get(b, ()) for a, b in itertools.combinations(subset, 2)):
                best = max(best, sum(weights[j] for j in subset))
    return best


def is_antichain(jobs, edges):
    after = reaches(edges)
    return all(b not in after.get(a, ()) and a not in after.get(b, ()) for a, b in itertools.combinations(jobs, 2))


@pytest.mark.parametrize(
    "weights, edges, expected",
    [
        pytest.param({"a": 1, "b": 1, "c": 1}, [("a", "b"), ("b", "c")], 1, id="a-chain-runs-one-at-a-time"),
        pytest.param({"a": 1, "b": 2, "c": 1}, [("a", "b"), ("b", "c")], 2, id="chain-weighs-its-widest-step"),
        pytest.param({"a": 1, "b": 1, "c": 1}, [], 3, id="independent-jobs-all-overlap"),
        pytest.param({"s": 1, "x": 2, "y": 3, "j": 1}, [("s", "x"), ("s", "y"), ("x", "j"), ("y", "j")], 5,
                     id="fan-out-branches-overlap"),
        pytest.param({"a": 1, "c": 1}, [("a", "other"), ("other", "c")], 1, id="a-path-through-another-group-orders-them"),
        pytest.param({"a": 4, "b": 1, "c": 1}, [("a", "b"), ("a", "c")], 4, id="one-heavy-job-beats-two-light-ones"),
        pytest.param({}, [("a", "b")], 0, id="no-jobs-on-the-group"),
    ],
)
def test_known_shapes(weights, edges, expected):
    widest = widest_concurrent(weights, edges)
    assert widest.weight == expected
    assert sum(weights[j] for j in widest.jobs) == expected and is_antichain(widest.jobs, edges)


@pytest.mark.parametrize("seed", range(40))
def test_random_dags_match_brute_force(seed):
    rng = random.Random(seed)
    nodes = [f"n{i}" for i in range(rng.randint(2, 10))]
    edges = [(a, b) for i, a in enumerate(nodes) for b in nodes[i + 1:] if rng.random() < 0.3]
    weights = {n: rng.randint(1, 4) for n in nodes if rng.random() < 0.7}  # the rest: other groups

    widest = widest_concurrent(weights, edges)

    assert widest.weight == brute_force(weights, edges)
    assert is_antichain(widest.jobs, edges) and set(widest.jobs) <= set(weights)


def test_a_long_chain_and_a_wide_fan_out_stay_fast():
    chain = [(f"c{i}", f"c{i + 1}") for i in range(5000)]
    assert widest_concurrent({f"c{i}": 1 for i in range(5001)}, chain).weight == 1
    fan = [("s", f"f{i}") for i in range(3000)] + [(f"f{i}", "j") for i in range(3000)]
    widest = widest_concurrent({"s": 1, "j": 1, **{f"f{i}": 2 for i in range(3000)}}, fan)
    assert widest.weight == 6000 and len(widest.jobs) == 3000
