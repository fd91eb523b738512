"""The layered layout of workflow graphs: columns by generation, rows by barycenter, diff states."""
from __future__ import annotations

import pytest

from pipelines.diff import diff_graphs
from pipelines.graph_layout import ADDED, CHANGED, REMOVED, SAME, layout_diff, layout_graph


def node(node_id, group="ingest", **fields):
    return {"id": node_id, "type": "noop", "group": group, **fields}


def graph(nodes, *pairs, **edge_fields):
    return {"nodes": nodes, "edges": [{"from": a, "to": b, **edge_fields} for a, b in pairs]}


DIAMOND = graph(
    [node("fetch"), node("score", replicas=3), node("announce", "load"), node("total", "load")],
    ("fetch", "score"), ("fetch", "announce"), ("score", "total"), ("announce", "total"),
)


def test_columns_are_generations_and_every_edge_points_right():
    layout = layout_graph(DIAMOND)

    assert {n.id: n.layer for n in layout.nodes} == {"fetch": 0, "score": 1, "announce": 1, "total": 2}
    for edge in layout.edges:
        assert layout.node(edge.source).x < layout.node(edge.target).x
    xs = sorted({n.x for n in layout.nodes})
    assert len(xs) == 3 and layout.width > xs[-1] + layout.nodes[0].width


def test_nodes_of_a_column_do_not_overlap_and_fit_in_the_picture():
    layout = layout_graph(DIAMOND)

    score, announce = layout.node("score"), layout.node("announce")
    assert score.y + score.height <= announce.y  # document order inside the column
    for box in layout.nodes:
        assert 0 <= box.x and box.x + box.width <= layout.width
        assert 0 <= box.y and box.y + box.height <= layout.height


def test_groups_replicas_and_compensations_are_carried():
    doc = graph([node("a", compensate={"type": "log", "config": {}}), node("b", "load", replicas=3), node("c", None)],
                ("a", "b"), ("b", "c"))

    layout = layout_graph(doc)

    assert layout.groups == ("ingest", "load")
    a, b, c = (layout.node(x) for x in "abc")
    assert (a.group_index, b.group_index, c.group_index) == (0, 1, -1)
    assert (a.compensate, b.compensate) == ("log", None)
    assert (a.replicas, a.stack, b.replicas, len(b.stack)) == (1, (), 3, 2)


def test_a_later_column_follows_its_predecessors_rows():
    # b2 feeds only y, which is listed first in its column: the barycenter pass moves y below x
    doc = graph([node("b1"), node("b2"), node("y"), node("x")], ("b1", "x"), ("b2", "y"))

    layout = layout_graph(doc)

    assert layout.node("x").y < layout.node("y").y


def test_edges_carry_branch_labels_and_ports_name_their_node():
    doc = graph([node("check", type="condition"), node("yes")], ("check:out", "yes"), branch=True)

    [edge] = layout_graph(doc).edges

    assert (edge.source, edge.target, edge.label) == ("check", "yes", "true")
    assert edge.d.startswith("M")


@pytest.mark.parametrize(
    "doc",
    [None, {}, {"nodes": "x"}, {"nodes": [{"id": 3}, "junk", {"type": "noop"}]},
     {"nodes": [node("a")], "edges": [{"from": "a", "to": "ghost"}, "junk"]}],
    ids=["none", "empty", "nodes-not-a-list", "bad-nodes", "edge-to-unknown"],
)
def test_a_document_that_does_not_validate_still_draws_what_it_can(doc):
    layout = layout_graph(doc)

    assert layout.width > 0 and all(n.id == "a" for n in layout.nodes) and layout.edges == ()


def test_a_cycle_goes_to_one_last_column_marked():
    doc = graph([node("start"), node("p"), node("q")], ("start", "p"), ("p", "q"), ("q", "p"))

    layout = layout_graph(doc)

    assert [(n.id, n.layer, n.in_cycle) for n in layout.nodes] == [
        ("start", 0, False), ("p", 1, True), ("q", 1, True)]
    assert len(layout.edges) == 3


def test_the_diff_keeps_removed_nodes_and_marks_every_state():
    old = graph([node("a"), node("b"), node("gone")], ("a", "b"), ("a", "gone"))
    new = graph([node("a"), node("b", replicas=2), node("fresh")], ("a", "b"), ("b", "fresh"))

    layout = layout_diff(old, new, diff_graphs(old, new))

    states = {n.id: n.state for n in layout.nodes}
    assert states == {"a": SAME, "b": CHANGED, "fresh": ADDED, "gone": REMOVED}
    assert layout.node("b").changed_fields == ("replicas",)
    assert {(e.source, e.target): e.state for e in layout.edges} == {
        ("a", "b"): SAME, ("b", "fresh"): ADDED, ("a", "gone"): REMOVED}


def test_layout_does_not_modify_its_input():
    import copy

    before = copy.deepcopy(DIAMOND)
    layout_graph(DIAMOND)
    assert DIAMOND == before
