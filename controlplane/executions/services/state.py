"""What the store says about a run: node states, the skip rule, and the template context.

Pure functions over rows already loaded, so one query feeds every decision of a claim. The
pinned graph is written once when a run starts and never changes, so each process keeps its
parsed form and indexes (`pinned_graph`) instead of decoding the JSON on every step.
"""
from __future__ import annotations

from collections import OrderedDict, defaultdict
from dataclasses import dataclass
from typing import Any, Iterable

from django.utils import timezone

from controlplane.executions.models import EventType, Execution, ExecutionStatus, StepRun, StepStatus
from controlplane.executions.services.rows import step_run_rows

SUCCEEDED, SKIPPED, PENDING = "succeeded", "skipped", "pending"
_DONE_STATUSES = frozenset(
    {StepStatus.SUCCEEDED, StepStatus.COMPENSATING, StepStatus.COMPENSATED, StepStatus.COMPENSATION_FAILED}
)


# Fields of a run that never change once it started: with the pinned graph, all that running a
# step needs besides the run's status and its step runs.
RUN_FACT_FIELDS = ("company_id", "deployment_id", "version_id", "environment", "trigger", "input", "started_at")


class PinnedGraph:
    """A run's execution graph with the lookups claims need: jobs by id, incoming edges by node;
    and once known, the run's unchanging fields (`facts`, see `remember_run`)."""

    __slots__ = ("raw", "jobs", "incoming", "facts")

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw
        self.facts: dict[str, Any] | None = None
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


@dataclass(frozen=True, slots=True)
class ClaimReads:
    """What a claim of one node reads: `with_outputs`, every upstream output (for the template
    context); `with_output`, step outputs at all (also for condition branches); `node_ids`, the
    nodes whose attempts it reads (None: all)."""

    with_outputs: bool
    with_output: bool
    node_ids: list[str] | None


def claim_reads(graph: PinnedGraph, node_id: str, *, with_outputs: bool) -> ClaimReads:
    """The template context needs every upstream output; otherwise the node and its predecessors
    (statuses, and for condition branches outputs) are all a claim decides on."""
    incoming = graph.incoming.get(node_id, [])
    if with_outputs:
        return ClaimReads(True, True, None)
    branches = any(edge.get("branch") is not None for edge in incoming)
    return ClaimReads(False, branches, [node_id, *{edge["from"] for edge in incoming}])


def remember_run(execution: Execution) -> PinnedGraph:
    """Cache the run's pinned graph and unchanging fields from a fully loaded `execution`."""
    pinned = pinned_graph(execution.pk, execution.graph)
    if pinned.facts is None:
        pinned.facts = {name: getattr(execution, name) for name in RUN_FACT_FIELDS}
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


def pending_nodes(execution: Execution, by_shard) -> list[str]:
    """Nodes of the run not yet recorded succeeded or skipped."""
    return [job["id"] for job in execution.graph["jobs"] if node_state(job, by_shard) == PENDING]


def succeed(execution: Execution, by_shard) -> tuple[str, dict[str, Any]]:
    """Mark `execution` succeeded (unsaved: status, finished_at) and return its event; every node
    must be recorded (`pending_nodes` empty)."""
    execution.status = ExecutionStatus.SUCCEEDED
    execution.finished_at = timezone.now()
    duration_ms = None
    if execution.started_at:
        duration_ms = int((execution.finished_at - execution.started_at).total_seconds() * 1000)
    skipped = [job["id"] for job in execution.graph["jobs"] if node_state(job, by_shard) == SKIPPED]
    return EventType.EXECUTION_SUCCEEDED, {"duration_ms": duration_ms, "skipped": skipped}


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
