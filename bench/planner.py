"""Benchmark of the deployment planner (issue 4): plan and diff a large generated workflow.

Workflow: 2,000 graph nodes (1,950 steps + 50 blueprint instances of 5 blueprints, one of
them nested, 10 inner jobs each) across 10 worker groups, ~10% landing edges, secret refs and
runtime templates in configs. The deployed side is the plan of the previous version, in which
5% of the nodes (100) differ: config edits, replica changes, placement moves, type changes,
blueprint param edits, added and removed nodes.

Prints best-of-5 and median for the full plan and for the diff alone, a baseline measured in the
same run (canonical JSON + sha256 of the graph document, i.e. touching every byte once) with
the ratio to it, and whether the full plan is under the 1 s target.

Run from the repository root: ``python bench/planner.py`` (no Django needed).
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pipelines.graph import graph_digest  # noqa: E402
from pipelines.planner import (  # noqa: E402
    DeployedJob,
    FleetSnapshot,
    GroupState,
    diff_jobs,
    plan_deployment,
)

NODES = 2_000
INSTANCES = 50
GROUPS = [f"g{i}" for i in range(10)]
TARGET_S = 1.0
RUNS = 5
TYPES = frozenset({"noop", "log", "http", "landing_write", "landing_read"})


def make_blueprints() -> dict:
    """Five blueprints of 10 inner jobs; ``nested@1`` wraps ``leaf@1`` (5 jobs) plus 5 of its own."""

    def chain(n, prefix="s"):
        nodes = [{"id": f"{prefix}{i}", "type": "http" if i % 3 == 0 else "log",
                  "config": ({"url": "{{ .params.url }}", "headers": {"X-Batch": "{{ .params.batch }}"}}
                             if i % 3 == 0 else
                             {"message": f"step {i} got {{{{ .steps.{prefix}{max(i - 1, 0)}.output.n }}}}"})}
                 for i in range(n)]
        edges = [{"from": f"{prefix}{i}", "to": f"{prefix}{i + 1}"} for i in range(n - 1)]
        return nodes, edges

    bps = {}
    for b in range(4):
        nodes, edges = chain(10)
        bps[(f"bp{b}", 1)] = {"params": {"url": {}, "batch": {"default": "100"}},
                              "inputs": [{"name": "in", "to": ["s0"]}],
                              "outputs": [{"name": "out", "from": "s9"}], "nodes": nodes, "edges": edges}
    leaf_nodes, leaf_edges = chain(5, "l")
    bps[("leaf", 1)] = {"params": {"url": {}, "batch": {"default": "10"}},
                        "inputs": [{"name": "in", "to": ["l0"]}], "outputs": [{"name": "out", "from": "l4"}],
                        "nodes": leaf_nodes, "edges": leaf_edges}
    own_nodes, own_edges = chain(5)
    bps[("nested", 1)] = {
        "params": {"url": {}, "batch": {"default": "100"}},
        "inputs": [{"name": "in", "to": ["s0"]}],
        "outputs": [{"name": "out", "from": "leaf"}],
        "nodes": own_nodes + [{"id": "leaf", "blueprint": "leaf@1", "params": {"url": "{{ .params.url }}"}}],
        "edges": own_edges + [{"from": "s4", "to": "leaf"}],
    }
    return bps


def make_graph(seed: int = 7) -> dict:
    rng = random.Random(seed)
    names = [f"bp{b}@1" for b in range(4)] + ["nested@1"]
    instance_at = set(rng.sample(range(10, NODES), INSTANCES))
    nodes, edges = [], []
    for i in range(NODES):
        node_id = f"n{i:04d}"
        group = GROUPS[(i // 200) % len(GROUPS)]
        if i in instance_at:
            nodes.append({"id": node_id, "blueprint": names[i % len(names)], "group": group,
                          "params": {"url": f"https://example.test/{node_id}"}})
        elif i % 4 == 0:
            nodes.append({"id": node_id, "type": "http", "group": group,
                          "config": {"url": f"https://example.test/{node_id}", "method": "POST",
                                     "headers": {"Authorization": {"$secret": f"token-{i % 20}"}}},
                          "retry": {"max_attempts": 3}, "timeout_s": 30})
        elif i % 4 == 1:
            nodes.append({"id": node_id, "type": "log", "group": group,
                          "config": {"message": f"{{{{ .steps.n{max(i - 1, 0):04d}.output }}}}"}})
        else:
            nodes.append({"id": node_id, "type": "noop", "group": group, "replicas": 1 + i % 2})
        if i:
            for parent in {rng.randrange(max(0, i - 30), i), i - 1}:
                landing = GROUPS[(parent // 200) % 10] != group and rng.random() < 0.5
                edges.append({"from": f"n{parent:04d}", "to": node_id,
                              **({"delivery": "landing"} if landing or rng.random() < 0.05 else {})})
    return {"params": {"region": "us-east"}, "nodes": nodes, "edges": edges}


def change_five_percent(graph: dict, seed: int = 11) -> tuple[dict, dict]:
    """A copy of ``graph`` with 5% of its nodes changed, and a placement override set."""
    rng = random.Random(seed)
    nodes = [dict(n) for n in graph["nodes"]]
    picked = rng.sample(range(1, len(nodes) - 10), NODES // 20)
    placement = {}
    for k, i in enumerate(picked):
        node = nodes[i]
        kind = k % 6
        if "blueprint" in node:
            node["params"] = {"url": node["params"]["url"] + "/v2"}
        elif kind == 0:
            node["replicas"] = 3
        elif kind == 1 and node["type"] == "http":
            node["config"] = {**node["config"], "url": node["config"]["url"] + "/v2"}
        elif kind == 2:
            placement[node["id"]] = GROUPS[(GROUPS.index(node["group"]) + 1) % len(GROUPS)]
        elif kind == 3:
            node["type"], node["config"] = "noop", {}
        else:
            node["timeout_s"] = 45
    added = [{"id": f"x{i:03d}", "type": "noop", "group": GROUPS[i % 10]} for i in range(5)]
    nodes = nodes[:-5] + added  # remove 5 sinks (and their edges), add 5 fresh nodes
    keep = {n["id"] for n in nodes}
    edges = [e for e in graph["edges"] if e["from"] in keep and e["to"] in keep]
    return {**graph, "nodes": nodes, "edges": edges}, placement


def timed(fn, runs=RUNS):
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times), result


def main() -> int:
    blueprints = make_blueprints()
    fleet = FleetSnapshot({g: GroupState(g, 4, 4_000, TYPES) for g in GROUPS})
    secrets = frozenset(f"token-{i}" for i in range(20))
    common = dict(blueprints=blueprints, templates={}, replicas={}, fleet=fleet, secrets=secrets,
                  landing_store="file:///var/landing")

    previous = make_graph()
    old_plan = plan_deployment(previous, placement={}, deployed={}, **common)
    deployed = {j.job_id: DeployedJob.from_job(j) for j in old_plan.jobs}
    current, placement = change_five_percent(previous)

    def full():
        return plan_deployment(current, placement=placement, deployed=deployed, **common)

    plan_best, plan_median, plan = timed(full)
    diff_best, diff_median, _ = timed(lambda: diff_jobs(plan.jobs, deployed))
    base_best, base_median, _ = timed(lambda: graph_digest(current))

    kinds = {}
    for job in plan.jobs:
        kinds[job.kind] = kinds.get(job.kind, 0) + 1
    print(f"workflow: {len(current['nodes'])} nodes ({INSTANCES} blueprint instances), "
          f"{len(current['edges'])} edges, {len(GROUPS)} groups -> {len(plan.jobs)} jobs {kinds}")
    print(f"changes: {plan.summary}; errors: {len(plan.errors)}, warnings: {len(plan.warnings)}")
    for issue in plan.errors[:5]:
        print(f"  error {issue.path}: {issue.code}: {issue.message}")
    print(f"full plan : best {plan_best * 1000:8.1f} ms   median {plan_median * 1000:8.1f} ms")
    print(f"diff alone: best {diff_best * 1000:8.1f} ms   median {diff_median * 1000:8.1f} ms")
    print(f"baseline  : best {base_best * 1000:8.1f} ms   median {base_median * 1000:8.1f} ms"
          "   (graph_digest of the document)")
    print(f"ratio full plan / baseline: {plan_median / base_median:.1f}x (medians)")
    under = plan_median < TARGET_S
    print(f"target: full plan under {TARGET_S:.0f} s: {'yes' if under else 'NO'} (median {plan_median:.3f} s)")
    return 0 if under and not plan.errors else 1


if __name__ == "__main__":
    sys.exit(main())
