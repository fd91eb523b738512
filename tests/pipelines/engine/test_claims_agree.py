"""The locked and the lock-free claim decide alike over random histories.

Both call `decide`; what differs is what they read. The locked claim reads every attempt with its
claim (task, try, process) and looks at the claiming process; the lock-free claim reads only what
`claim_reads` asks for (the node and its predecessors, outputs only for branches or templates) in
the step path's columns, and nothing about processes. Whenever the lock-free read is enough to
decide (anything but `defer`), its decision must be the one the locked claim makes: otherwise the
lock-free path would write something the locked path would not.
"""
from __future__ import annotations

from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.engine import DEFER, AttemptRecord, DeliveryFacts, ExecutionGraph, Snapshot, decide
from pipelines.engine.history import claim_reads
from tests.pipelines.engine.graphs import NOW, RUN_ID

NODES = ["a", "b", "c"]
STATUSES = ["succeeded", "failed", "lost", "running", "skipped"]


@st.composite
def graphs(draw) -> ExecutionGraph:
    jobs, edges = [], []
    for index, node in enumerate(NODES):
        kind = draw(st.sampled_from(["noop", "condition", "jq"]))
        jobs.append({"id": node, "type": kind, "group": "g", "replicas": draw(st.integers(1, 2)), "config": {},
                     "retry": {"max_attempts": draw(st.integers(1, 3))},
                     "timeout_s": draw(st.sampled_from([None, 1, 30]))})
        for source in NODES[:index]:
            if draw(st.booleans()):
                source_job = jobs[NODES.index(source)]
                branch = draw(st.sampled_from(["true", "false"])) if source_job["type"] == "condition" else None
                edges.append({"from": source, "to": node, "branch": branch})
    return ExecutionGraph.from_dict({"jobs": jobs, "edges": edges})


@st.composite
def histories(draw, graph: ExecutionGraph, claimed: tuple[str, int] | None = None) -> list[AttemptRecord]:
    """Attempts of every shard; the `claimed` shard always has some (that is where rules differ)."""
    records, next_id = [], 1
    for job in graph.jobs:
        for shard in range(job.replicas):
            least = 1 if (job.id, shard) == claimed else 0
            for number in range(1, draw(st.integers(least, 2 + least)) + 1):
                status = draw(st.sampled_from(STATUSES))
                output = None
                if status == "succeeded":
                    output = {"branch": draw(st.sampled_from(["true", "false"]))} if job.type == "condition" \
                        else draw(st.sampled_from([None, 1, {"x": 2}]))
                records.append(AttemptRecord(
                    next_id, job.id, shard, number, status, draw(st.sampled_from(["w1", "w2"])),
                    NOW - timedelta(seconds=draw(st.integers(0, 90))), output, False,
                    draw(st.sampled_from(["t-1", "t-2", ""])), draw(st.integers(0, 2)),
                    draw(st.sampled_from([None, 11, 12])), draw(st.booleans())))
                next_id += 1
    return records


def lock_free_view(graph: ExecutionGraph, node_id: str, records: list[AttemptRecord], *, with_outputs: bool):
    """The attempts as the lock-free read returns them: only the nodes `claim_reads` names, in the
    step path's columns (no claim), outputs only when it reads them."""
    reads = claim_reads(graph, node_id, with_outputs=with_outputs)
    view = []
    for record in records:
        if reads.node_ids is not None and record.node_id not in reads.node_ids:
            continue
        view.append(AttemptRecord(record.id, record.node_id, record.shard, record.attempt, record.status,
                                  record.worker, record.started_at, record.output if reads.with_output else None))
    return view


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_the_lock_free_claim_decides_as_the_locked_claim_whenever_it_decides(data):
    graph = data.draw(graphs())
    node = data.draw(st.sampled_from(NODES))
    shard = data.draw(st.integers(0, graph.job(node).replicas - 1))
    records = data.draw(histories(graph, (node, shard)))
    status = data.draw(st.sampled_from(["running"] * 6 + ["compensating", "succeeded"]))
    task_id, retries = data.draw(st.sampled_from(["t-1", "t-2"])), data.draw(st.integers(0, 3))
    with_outputs = data.draw(st.booleans())

    locked = decide(graph, node, shard, Snapshot.of(RUN_ID, status, records),
                    DeliveryFacts(task_id=task_id, retries=retries, claimer_gone=data.draw(st.booleans())), NOW)
    lock_free = decide(graph, node, shard, Snapshot.of(RUN_ID, status, lock_free_view(
        graph, node, records, with_outputs=with_outputs)), DeliveryFacts(task_id=task_id, retries=retries), NOW)

    if lock_free.kind != DEFER:
        assert lock_free == locked
    assert locked.kind != DEFER  # the locked claim always has what it needs


@settings(max_examples=50, deadline=None)
@given(data=st.data())
def test_the_decision_does_not_depend_on_attempts_of_unrelated_nodes(data):
    """The lock-free read leaves out nodes that are neither the claimed one nor a predecessor."""
    graph = data.draw(graphs())
    records = data.draw(histories(graph))
    node = data.draw(st.sampled_from(NODES))
    related = {node, *graph.predecessors(node)}
    facts = DeliveryFacts(task_id="t-1", claimer_gone=False)

    full = decide(graph, node, 0, Snapshot.of(RUN_ID, "running", records), facts, NOW)
    narrow = decide(graph, node, 0, Snapshot.of(RUN_ID, "running", [r for r in records if r.node_id in related]),
                    facts, NOW)

    assert full == narrow
