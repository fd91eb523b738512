"""split_segments: where gates cut a graph, and that running segments in order keeps every edge."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.engine.segments import GATE_TYPES, Segment, current_segment, split_segments


def jobs(spec: str, gates: str = "") -> tuple[list[dict], list[tuple[str, str]]]:
    """'a>b b>c', gates 'b' -> (jobs in order of first mention, edges); lone ids are nodes too."""
    gate_ids = set(gates.split())
    ids: list[str] = []
    edges = []
    for part in spec.split():
        ends = part.split(">")
        for end in ends:
            if end not in ids:
                ids.append(end)
        if len(ends) == 2:
            edges.append((ends[0], ends[1]))
    return [{"id": i, "type": "approval" if i in gate_ids else "noop"} for i in ids], edges


def cut(spec, gates=""):
    return [(s.gates, s.nodes) for s in split_segments(*jobs(spec, gates))]


def test_no_gates_is_one_segment():
    assert split_segments(*jobs("a>b b>c a>c")) == (Segment(0, (), ("a", "b", "c")),)


def test_linear_gate_cuts_in_two():
    assert cut("plan>ok ok>apply apply>test", "ok") == [((), ("plan",)), (("ok",), ("apply", "test"))]


def test_parallel_gates_share_a_segment():
    assert cut("a>g1 a>g2 g1>b g2>c", "g1 g2") == [((), ("a",)), (("g1", "g2"), ("b", "c"))]


def test_a_node_not_behind_the_gate_stays_in_segment_zero():
    assert cut("a>g g>b c>d", "g") == [((), ("a", "c", "d")), (("g",), ("b",))]


def test_join_after_a_gate_and_a_plain_branch_is_behind_the_gate():
    assert cut("a>g g>j a>x x>j", "g") == [((), ("a", "x")), (("g",), ("j",))]


def test_gate_first_leaves_segment_zero_empty():
    assert cut("g>a a>b", "g") == [((), ()), (("g",), ("a", "b"))]


def test_gate_last_leaves_its_segment_empty():
    assert cut("a>g", "g") == [((), ("a",)), (("g",), ())]


def test_two_gates_in_a_row():
    assert cut("a>g1 g1>g2 g2>b", "g1 g2") == [((), ("a",)), (("g1",), ()), (("g2",), ("b",))]


def test_depth_is_the_most_gates_on_any_path():
    # b is after one gate on a>g1>b and after two on a>g1>g2>b: it waits for both.
    assert cut("a>g1 g1>g2 g2>b g1>b", "g1 g2") == [((), ("a",)), (("g1",), ()), (("g2",), ("b",))]


def test_map_is_a_gate_too_and_other_types_can_be_chosen():
    assert "map" in GATE_TYPES
    graph = [{"id": "a", "type": "noop"}, {"id": "m", "type": "map"}, {"id": "b", "type": "noop"}]
    assert [s.nodes for s in split_segments(graph, [{"from": "a", "to": "m"}, {"from": "m", "to": "b"}])] == [
        ("a",), ("b",)]
    assert len(split_segments(graph, [("a", "m"), ("m", "b")], gate_types={"noop"})) == 3


@pytest.mark.parametrize("edges, message", [
    ([("a", "zz")], "unknown node 'zz'"),
    ([("a", "b"), ("b", "a")], "cycle"),
], ids=["dangling", "cycle"])
def test_bad_graphs_are_refused_naming_the_culprit(edges, message):
    with pytest.raises(ValueError, match=message):
        split_segments([{"id": "a", "type": "noop"}, {"id": "b", "type": "noop"}], edges)


def test_duplicate_ids_are_refused():
    with pytest.raises(ValueError, match="duplicate node ids"):
        split_segments([{"id": "a", "type": "noop"}, {"id": "a", "type": "noop"}], [])


def test_current_segment_is_the_first_with_something_left():
    segments = split_segments(*jobs("a>g g>b", "g"))
    assert current_segment(segments, lambda n: False).index == 0
    assert current_segment(segments, lambda n: n == "a").index == 1
    assert current_segment(segments, lambda n: True) is None


@st.composite
def dags(draw):
    n = draw(st.integers(1, 9))
    edges = [(f"n{i}", f"n{j}") for i in range(n) for j in range(i + 1, n) if draw(st.booleans())]
    gates = {f"n{i}" for i in range(n) if draw(st.integers(0, 3)) == 0}
    return [{"id": f"n{i}", "type": "approval" if f"n{i}" in gates else "noop"} for i in range(n)], edges


@settings(max_examples=300, deadline=None)
@given(dags())
def test_every_edge_holds_and_every_node_is_placed_once(graph):
    job_list, edges = graph
    segments = split_segments(job_list, edges)
    # Segment k runs after its gates, which open after segment k-1: the start order of a node is
    # (its segment, 0 for a gate, 1 for a node).
    when = {}
    for segment in segments:
        assert segment.index == len([s for s in segments if s.index < segment.index])
        for gate in segment.gates:
            when[gate] = (segment.index, 0)
        for node in segment.nodes:
            when[node] = (segment.index, 1)
    assert sorted(when) == sorted(job["id"] for job in job_list)
    assert segments[0].gates == ()
    for source, target in edges:
        # the target starts only after its source's whole step (a node) or gate is over
        assert when[source] < when[target] or (when[source] == when[target] and when[source][1] == 1), (source, target)
    kinds = {job["id"]: job["type"] for job in job_list}
    for segment in segments:
        assert all(kinds[g] == "approval" for g in segment.gates)
        assert all(kinds[n] != "approval" for n in segment.nodes)
