"""What the store says about a run: node states, the skip rule, and the template context.

Pure functions over rows already loaded, so one query feeds every decision of a claim.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable

from controlplane.executions.models import Execution, StepRun, StepStatus

SUCCEEDED, SKIPPED, PENDING = "succeeded", "skipped", "pending"


def runs_by_shard(runs: Iterable[StepRun]) -> dict[tuple[str, int], list[StepRun]]:
    out: dict[tuple[str, int], list[StepRun]] = defaultdict(list)
    for run in runs:
        if not run.is_compensation:
            out[(run.node_id, run.shard)].append(run)
    return out


def shard_state(runs: list[StepRun]) -> str:
    statuses = {run.status for run in runs}
    if StepStatus.SUCCEEDED in statuses or StepStatus.COMPENSATING in statuses or StepStatus.COMPENSATED in statuses \
            or StepStatus.COMPENSATION_FAILED in statuses:
        return SUCCEEDED
    if StepStatus.SKIPPED in statuses:
        return SKIPPED
    return PENDING


def node_state(job: dict[str, Any], by_shard: dict[tuple[str, int], list[StepRun]]) -> str:
    """succeeded when every shard succeeded (or was skipped), skipped when all were, else pending."""
    states = {shard_state(by_shard.get((job["id"], shard), [])) for shard in range(job["replicas"])}
    if states == {SKIPPED}:
        return SKIPPED
    if PENDING in states:
        return PENDING
    return SUCCEEDED


def node_output(job: dict[str, Any], by_shard: dict[tuple[str, int], list[StepRun]]) -> Any:
    """The node's output: its one shard's output, or the list of shard outputs (merge) by index."""
    outputs = []
    for shard in range(job["replicas"]):
        done = [r for r in by_shard.get((job["id"], shard), []) if shard_state([r]) == SUCCEEDED]
        outputs.append(done[-1].output if done else None)
    return outputs[0] if job["replicas"] == 1 else outputs


def waiting_on(execution: Execution, node_id: str, by_shard) -> list[str]:
    """Predecessors of `node_id` that have not completed yet."""
    jobs = {job["id"]: job for job in execution.graph["jobs"]}
    preds = {edge["from"] for edge in execution.graph["edges"] if edge["to"] == node_id}
    return sorted(p for p in preds if node_state(jobs[p], by_shard) == PENDING)


def is_dead(execution: Execution, node_id: str, by_shard) -> bool:
    """The skip rule: a node with incoming edges that are all dead is skipped.

    An edge is dead when its source was skipped, or its source is a condition whose output branch
    differs from the edge's `branch`. A node without incoming edges always runs.
    """
    jobs = {job["id"]: job for job in execution.graph["jobs"]}
    incoming = [edge for edge in execution.graph["edges"] if edge["to"] == node_id]
    if not incoming:
        return False

    def dead(edge) -> bool:
        source = jobs[edge["from"]]
        if node_state(source, by_shard) == SKIPPED:
            return True
        if edge.get("branch") is not None:
            output = node_output(source, by_shard)
            branch = output.get("branch") if isinstance(output, dict) else None
            return branch != edge["branch"]
        return False

    return all(dead(edge) for edge in incoming)


def template_context(execution: Execution, by_shard) -> dict[str, Any]:
    """`{trigger, params, steps: {id: {output}}, execution}`, read from the store."""
    steps = {}
    for job in execution.graph["jobs"]:
        state = node_state(job, by_shard)
        if state == SUCCEEDED:
            steps[job["id"]] = {"output": node_output(job, by_shard)}
        elif state == SKIPPED:
            steps[job["id"]] = {"output": None, "skipped": True}
    return {
        "trigger": execution.input,
        "params": execution.graph.get("params", {}),
        "steps": steps,
        "execution": {
            "id": str(execution.pk),
            "trigger": execution.trigger,
            "started_at": execution.started_at.isoformat() if execution.started_at else None,
        },
    }
