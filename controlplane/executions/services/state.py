"""What the store says about a run: node states, the skip rule, and the template context.

Pure functions over rows already loaded, so one query feeds every decision of a claim. The
pinned graph is written once when a run starts and never changes, so each process keeps its
parsed form and indexes (`pinned_graph`) instead of decoding the JSON on every step.
"""
from __future__ import annotations

from collections import OrderedDict, defaultdict
from dataclasses import dataclass
from typing import Any, Iterable

from controlplane.executions.models import Execution, StepRun, StepStatus
from controlplane.executions.services.rows import step_run_rows

SUCCEEDED, SKIPPED, PENDING = "succeeded", "skipped", "pending"
_DONE_STATUSES = frozenset(
    {StepStatus.SUCCEEDED, StepStatus.COMPENSATING, StepStatus.COMPENSATED, StepStatus.COMPENSATION_FAILED}
)


class PinnedGraph:
    """A run's execution graph with the lookups claims need: jobs by id, incoming edges by node."""

    __slots__ = ("raw", "jobs", "incoming")

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw
        self.jobs = {job["id"]: job for job in raw.get("jobs", [])}
        incoming: dict[str, list[dict]] = defaultdict(list)
        for edge in raw.get("edges", []):
            incoming[edge["to"]].append(edge)
        self.incoming = dict(incoming)


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


@dataclass(slots=True)
class RunRow:
    """The columns of a step run that claims decide on (not its request, input or error), in
    `rows.RUN_COLUMNS` order."""

    id: int
    node_id: str
    shard: int
    attempt: int
    status: str
    worker: str
    started_at: Any
    output: Any = None
    is_compensation: bool = False


def load_runs(execution_id, *, with_output: bool, node_ids: Iterable[str] | None = None) -> dict[tuple[str, int], list[RunRow]]:
    """The run's step attempts by (node, shard), oldest first, in one query.

    Outputs are read only when the caller needs them (template context, condition branches):
    they can be large, and most claims only need statuses. `node_ids` narrows the rows to the
    nodes a decision is about (a claim: the node and its predecessors).
    """
    return runs_by_shard(RunRow(*row) for row in step_run_rows(execution_id, with_output=with_output,
                                                                node_ids=node_ids))


def claim_scope(execution: Execution, node_id: str) -> list[str]:
    """The nodes a claim of `node_id` decides on: itself and its predecessors."""
    graph = pinned_graph(execution.pk, execution.graph)
    return [node_id, *{edge["from"] for edge in graph.incoming.get(node_id, [])}]


def runs_by_shard(runs: Iterable[StepRun | RunRow]) -> dict[tuple[str, int], list]:
    out: dict[tuple[str, int], list] = defaultdict(list)
    for run in runs:
        if not run.is_compensation:
            out[(run.node_id, run.shard)].append(run)
    return out


def shard_state(runs: list) -> str:
    statuses = {run.status for run in runs}
    if statuses & _DONE_STATUSES:
        return SUCCEEDED
    if StepStatus.SKIPPED in statuses:
        return SKIPPED
    return PENDING


def node_state(job: dict[str, Any], by_shard) -> str:
    """succeeded when every shard succeeded (or was skipped), skipped when all were, else pending."""
    states = {shard_state(by_shard.get((job["id"], shard), [])) for shard in range(job["replicas"])}
    if states == {SKIPPED}:
        return SKIPPED
    if PENDING in states:
        return PENDING
    return SUCCEEDED


def node_output(job: dict[str, Any], by_shard) -> Any:
    """The node's output: its one shard's output, or the list of shard outputs (merge) by index."""
    outputs = []
    for shard in range(job["replicas"]):
        done = [r for r in by_shard.get((job["id"], shard), []) if shard_state([r]) == SUCCEEDED]
        outputs.append(done[-1].output if done else None)
    return outputs[0] if job["replicas"] == 1 else outputs


def waiting_on(execution: Execution, node_id: str, by_shard) -> list[str]:
    """Predecessors of `node_id` that have not completed yet."""
    graph = pinned_graph(execution.pk, execution.graph)
    preds = {edge["from"] for edge in graph.incoming.get(node_id, [])}
    return sorted(p for p in preds if node_state(graph.jobs[p], by_shard) == PENDING)


def has_branch_edges(execution: Execution, node_id: str) -> bool:
    """True when an incoming edge depends on a condition's output (so outputs must be read)."""
    graph = pinned_graph(execution.pk, execution.graph)
    return any(edge.get("branch") is not None for edge in graph.incoming.get(node_id, []))


def is_dead(execution: Execution, node_id: str, by_shard) -> bool:
    """The skip rule: a node with incoming edges that are all dead is skipped.

    An edge is dead when its source was skipped, or its source is a condition whose output branch
    differs from the edge's `branch`. A node without incoming edges always runs.
    """
    graph = pinned_graph(execution.pk, execution.graph)
    incoming = graph.incoming.get(node_id, [])
    if not incoming:
        return False

    def dead(edge) -> bool:
        source = graph.jobs[edge["from"]]
        if node_state(source, by_shard) == SKIPPED:
            return True
        if edge.get("branch") is not None:
            output = node_output(source, by_shard)
            branch = output.get("branch") if isinstance(output, dict) else None
            return branch != edge["branch"]
        return False

    return all(dead(edge) for edge in incoming)


def template_context(execution: Execution, by_shard, *, with_steps: bool = True) -> dict[str, Any]:
    """`{trigger, params, steps: {id: {output}}, execution}`, read from the store.

    `with_steps=False` leaves out upstream outputs, for a step that neither templates its config
    nor reads the context (they were not loaded).
    """
    graph = pinned_graph(execution.pk, execution.graph)
    steps = {}
    if with_steps:
        for job in graph.raw["jobs"]:
            state = node_state(job, by_shard)
            if state == SUCCEEDED:
                steps[job["id"]] = {"output": node_output(job, by_shard)}
            elif state == SKIPPED:
                steps[job["id"]] = {"output": None, "skipped": True}
    return {
        "trigger": execution.input,
        "params": graph.raw.get("params", {}),
        "steps": steps,
        "execution": {
            "id": str(execution.pk),
            "trigger": execution.trigger,
            "started_at": execution.started_at.isoformat() if execution.started_at else None,
        },
    }
