"""The execution diff (a read): two runs compared step by step, plus their inputs and versions.

Per node: `identical`, `status_differs`, `output_differs` (with the differing JSON paths, e.g.
`$.items[2].id`), `only_left` or `only_right`. A node's status and output are those the run
recorded for it: its one shard's last attempt, or for a replicated node the list per shard.
"""
from __future__ import annotations

from typing import Any

from controlplane.executions.models import Execution, StepRun
from pipelines.jsondiff import json_diff

IDENTICAL, STATUS_DIFFERS, OUTPUT_DIFFERS = "identical", "status_differs", "output_differs"
ONLY_LEFT, ONLY_RIGHT = "only_left", "only_right"


def _nodes(execution: Execution) -> dict[str, dict[str, Any]]:
    """{node: {status, output}} from each shard's last attempt, in the run's graph order."""
    last: dict[tuple[str, int], StepRun] = {}
    for run in StepRun.objects.filter(execution=execution, is_compensation=False).order_by("attempt", "id"):
        last[(run.node_id, run.shard)] = run
    order = [job["id"] for job in execution.graph.get("jobs", [])]
    order += sorted({node for node, _ in last} - set(order))
    out = {}
    for node in order:
        shards = [last[key] for key in sorted(k for k in last if k[0] == node)]
        if not shards:
            continue
        if len(shards) == 1:
            out[node] = {"status": shards[0].status, "output": shards[0].output}
        else:
            statuses = {run.status for run in shards}
            out[node] = {"status": statuses.pop() if len(statuses) == 1 else "mixed",
                         "output": [run.output for run in shards]}
    return out


def _step(node: str, left: dict | None, right: dict | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"node_id": node, "left_status": left and left["status"],
                             "right_status": right and right["status"], "paths": []}
    if right is None:
        return {**entry, "result": ONLY_LEFT}
    if left is None:
        return {**entry, "result": ONLY_RIGHT}
    if left["status"] != right["status"]:
        return {**entry, "result": STATUS_DIFFERS}
    diff = json_diff(left["output"], right["output"])
    if diff.identical:
        return {**entry, "result": IDENTICAL}
    return {**entry, "result": OUTPUT_DIFFERS, "paths": list(diff.paths), "truncated": diff.truncated}


def execution_diff(*, left: Execution, right: Execution) -> dict[str, Any]:
    """Compare two runs the caller can see (the API checks that both are visible)."""
    left_nodes, right_nodes = _nodes(left), _nodes(right)
    order = list(left_nodes) + [node for node in right_nodes if node not in left_nodes]
    steps = [_step(node, left_nodes.get(node), right_nodes.get(node)) for node in order]
    inputs = json_diff(left.input, right.input)

    def version(run: Execution) -> dict[str, Any]:
        return {"id": run.version_id, "number": run.version.number, "workflow": run.version.workflow_id,
                "deployment": run.deployment_id}

    return {
        "left": str(left.pk),
        "right": str(right.pk),
        "identical": inputs.identical and left.version_id == right.version_id
        and all(step["result"] == IDENTICAL for step in steps),
        "input": {"identical": inputs.identical, "paths": list(inputs.paths), "truncated": inputs.truncated},
        "version": {"identical": left.version_id == right.version_id, "left": version(left), "right": version(right)},
        "status": {"left": left.status, "right": right.status},
        "steps": steps,
        "summary": {result: sum(1 for step in steps if step["result"] == result)
                    for result in (IDENTICAL, STATUS_DIFFERS, OUTPUT_DIFFERS, ONLY_LEFT, ONLY_RIGHT)},
    }
