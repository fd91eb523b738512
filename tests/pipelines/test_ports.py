"""Edge ends at blueprint ports (``harvest:in``) in structure checks, validation and the model."""

import pytest

from pipelines.errors import ISSUE_CODES, CycleError
from pipelines.graph import Edge, endpoint, parse_graph, split_endpoint
from pipelines.validation import validate_graph


def graph(*edges, extra_nodes=()):
    nodes = [
        {"id": "src", "type": "noop"},
        {"id": "harvest", "blueprint": "fanout-ingest@2"},
        {"id": "load", "type": "noop"},
        {"id": "tpl", "template": "http-get"},
        *extra_nodes,
    ]
    return {"nodes": nodes, "edges": [{"from": a, "to": b} for a, b in edges]}


def found(report):
    return [(i.path, i.code) for i in report.issues]


@pytest.mark.parametrize(
    "edges",
    [
        pytest.param([("src", "harvest:in"), ("harvest:out", "load")], id="named-ports"),
        pytest.param([("src", "harvest"), ("harvest", "load")], id="single-ports"),
        pytest.param([("src", "harvest:in"), ("src", "harvest:more"), ("harvest:out", "load"),
                      ("harvest:errors", "load")], id="several-ports"),
        pytest.param([("src", "harvest:in_1"), ("harvest:Out-2", "load")], id="port-characters"),
    ],
)
def test_ports_of_blueprint_nodes_are_accepted(edges):
    report = validate_graph(graph(*edges))
    assert report.ok, report.issues


@pytest.mark.parametrize(
    "edges, expected",
    [
        pytest.param([("src", "nowhere:in")], [("edges[0].to", "dangling_edge")], id="unknown-node"),
        pytest.param([("nowhere:out", "load")], [("edges[0].from", "dangling_edge")],
                     id="unknown-source"),
        pytest.param([("src:out", "load")], [("edges[0].from", "unknown_port")], id="port-on-step"),
        pytest.param([("src", "tpl:in")], [("edges[0].to", "unknown_port")], id="port-on-template"),
        pytest.param([("src", "harvest:")], [("edges[0].to", "unknown_port")], id="empty-port"),
        pytest.param([("src", "harvest:a:b")], [("edges[0].to", "unknown_port")], id="bad-port-name"),
        pytest.param([("harvest:out", "harvest:in")], [("edges[0]", "self_loop")],
                     id="instance-feeds-itself"),
    ],
)
def test_bad_port_ends_are_reported(edges, expected):
    report = validate_graph(graph(*edges))
    assert found(report) == expected
    assert all(i.code in ISSUE_CODES for i in report.issues)


@pytest.mark.parametrize(
    "end, fragments",
    [
        pytest.param("nowhere:in", ["'nowhere'", "add the node or remove the edge"], id="unknown"),
        pytest.param("load:in", ["'load' is not a blueprint instance", "without ':in'"],
                     id="not-a-blueprint"),
        pytest.param("harvest:", ["'harvest:<port>'", "'harvest' for its only port"], id="empty"),
    ],
)
def test_port_messages_name_the_fix(end, fragments):
    (issue,) = validate_graph(graph(("src", end))).issues
    for fragment in fragments:
        assert fragment in issue.message


def test_cycle_through_a_port_is_a_cycle_of_the_instance():
    doc = graph(("src", "harvest:in"), ("harvest:out", "load"), ("load", "harvest:feedback"))
    report = validate_graph(doc)
    assert [i.code for i in report.issues] == ["cycle"]
    assert "'harvest' -> 'load' -> 'harvest'" in report.issues[0].message
    with pytest.raises(CycleError) as exc:
        parse_graph(doc)
    assert exc.value.cycle == ["harvest", "load", "harvest"]


def test_edges_to_different_ports_are_not_duplicates():
    doc = graph(("src", "harvest:in"), ("src", "harvest:more"), ("src", "harvest:in"))
    assert found(validate_graph(doc)) == [("edges[2]", "duplicate_edge")]


def test_parsed_edges_keep_node_ids_and_ports():
    g = parse_graph(graph(("src", "harvest:in"), ("harvest:out", "load")))
    assert g.edges[0] == Edge("src", "harvest", target_port="in")
    assert g.edges[1] == Edge("harvest", "load", source_port="out")
    assert g.successors("harvest") == ("load",)
    order = g.topological_order()
    assert order.index("src") < order.index("harvest") < order.index("load")
    assert [e.to_dict() for e in g.edges] == [{"from": "src", "to": "harvest:in"},
                                               {"from": "harvest:out", "to": "load"}]
    assert parse_graph(g.to_dict()) == g


@pytest.mark.parametrize("end, parts", [("a", ("a", None)), ("a:p", ("a", "p")), ("a:", ("a", ""))])
def test_split_endpoint_round_trips(end, parts):
    assert split_endpoint(end) == parts
    assert endpoint(*parts) == end


def test_expanded_graphs_have_no_ports():
    doc = {"nodes": [{"id": "h/a", "type": "noop"}, {"id": "b", "type": "noop"}],
           "edges": [{"from": "h/a:out", "to": "b"}]}
    assert found(validate_graph(doc, expanded=True)) == [("edges[0].from", "unknown_port")]
