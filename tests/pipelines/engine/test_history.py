"""The rules read from a run's recorded attempts: state, skip, predecessors, template context."""
from __future__ import annotations

from pipelines.engine.history import (
    PENDING,
    SKIPPED,
    SUCCEEDED,
    claim_reads,
    is_dead,
    node_output,
    node_state,
    pending_nodes,
    shard_state,
    template_context,
    waiting_on,
)
from tests.pipelines.engine.graphs import NOW, attempt, graph, job, snapshot


def test_a_shard_is_done_once_any_attempt_succeeded_even_if_compensated_since():
    assert shard_state([attempt("a", "failed"), attempt("a", "succeeded", attempt=2)]) == SUCCEEDED
    assert shard_state([attempt("a", "compensated")]) == SUCCEEDED
    assert shard_state([attempt("a", "skipped")]) == SKIPPED
    assert shard_state([attempt("a", "lost"), attempt("a", "running", attempt=2)]) == PENDING


def test_a_replicated_node_succeeds_when_every_shard_did_and_outputs_are_listed_by_index():
    g = graph([job("a", replicas=2)])
    one = snapshot(attempt("a", "succeeded", shard=1, output=1))
    both = snapshot(attempt("a", "succeeded", shard=1, output=1), attempt("a", "succeeded", shard=0, output=0))

    assert node_state(g.job("a"), one.attempts) == PENDING
    assert node_state(g.job("a"), both.attempts) == SUCCEEDED
    assert node_output(g.job("a"), both.attempts) == [0, 1]


def test_a_branch_not_taken_is_dead_and_a_node_whose_edges_are_all_dead_is_skipped():
    g = graph([job("check", "condition"), job("yes"), job("no"), job("after")],
              [("check", "yes", "true"), ("check", "no", "false"), ("no", "after")])
    s = snapshot(attempt("check", "succeeded", output={"branch": "true"}), attempt("no", "skipped"))

    assert not is_dead(g, "yes", s.attempts) and is_dead(g, "no", s.attempts)
    assert is_dead(g, "after", s.attempts)  # its one source was skipped
    assert not is_dead(g, "check", s.attempts)  # no incoming edges: always runs


def test_waiting_on_lists_the_predecessors_not_done_and_pending_nodes_the_rest():
    g = graph([job("a"), job("b"), job("c")], [("a", "c"), ("b", "c")])
    s = snapshot(attempt("a", "succeeded"), attempt("b", "running"))

    assert waiting_on(g, "c", s.attempts) == ["b"]
    assert pending_nodes(g, s.attempts) == ["b", "c"]


def test_the_template_context_holds_outputs_and_skips():
    g = graph([job("a"), job("b"), job("c")])
    s = snapshot(attempt("a", "succeeded", output={"x": 1}), attempt("b", "skipped"))

    context = template_context(g, s.attempts, execution_id="run-1", trigger_input={"n": 1}, trigger="api",
                               started_at=NOW)

    assert context["steps"] == {"a": {"output": {"x": 1}}, "b": {"output": None, "skipped": True}}
    assert context["trigger"] == {"n": 1} and context["execution"]["started_at"] == NOW.isoformat()
    assert template_context(g, s.attempts, execution_id="r", trigger_input={}, trigger="api", started_at=None,
                            with_steps=False)["steps"] == {}


def test_a_claim_reads_its_node_and_predecessors_and_outputs_only_for_branches():
    g = graph([job("check", "condition"), job("yes"), job("z")], [("check", "yes", "true"), ("yes", "z")])

    assert claim_reads(g, "yes", with_outputs=False).with_output is True
    reads = claim_reads(g, "z", with_outputs=False)
    assert (reads.with_output, sorted(reads.node_ids)) == (False, ["yes", "z"])
    assert claim_reads(g, "z", with_outputs=True).node_ids is None
