import json

import pytest

from pipelines.diff import EdgeChange, EdgeRef, GraphDiff, NodeChange, diff_graphs
from pipelines.graph import parse_graph

BASE = {
    "params": {"region": "us-east", "size": 1},
    "nodes": [
        {"id": "fetch", "type": "http", "config": {"url": "https://a.test", "method": "GET"},
         "group": "ingest"},
        {"id": "load", "type": "noop"},
    ],
    "edges": [{"from": "fetch", "to": "load"}],
}


def edit(**changes):
    doc = json.loads(json.dumps(BASE))
    for fn in changes.values():
        fn(doc)
    return doc


def node(doc, nid):
    return next(n for n in doc["nodes"] if n["id"] == nid)


def test_identical_graphs_have_empty_diff():
    d = diff_graphs(BASE, json.loads(json.dumps(BASE)))
    assert d.is_empty and d == GraphDiff()
    assert d.summary() == "no changes"


def test_reordering_and_explicit_defaults_are_not_changes():
    other = edit(
        reorder=lambda d: d["nodes"].reverse(),
        defaults=lambda d: node(d, "load").update(
            replicas=1, config={}, retry={"max_attempts": 1}, group=None, timeout_s=None),
        delivery=lambda d: d["edges"][0].update(delivery="local"),
    )
    assert diff_graphs(BASE, other).is_empty


@pytest.mark.parametrize(
    "mutate, expected",
    [
        pytest.param(lambda d: node(d, "fetch")["config"].update(url="https://b.test"),
                     ("config.url",), id="config-url"),
        pytest.param(lambda d: node(d, "fetch").update(retry={"max_attempts": 3}),
                     ("retry.max_attempts",), id="retry-max-attempts"),
        pytest.param(lambda d: node(d, "fetch").update(group="egress"), ("group",), id="group"),
        pytest.param(lambda d: node(d, "load").update(type="log"), ("type",), id="type"),
        pytest.param(lambda d: node(d, "load").update(replicas=4), ("replicas",), id="replicas"),
        pytest.param(lambda d: node(d, "fetch")["config"].pop("method"), ("config.method",),
                     id="config-key-removed"),
        pytest.param(lambda d: node(d, "fetch")["config"].update(headers={"A": "1"}),
                     ("config.headers",), id="config-key-added"),
        pytest.param(lambda d: node(d, "load").update(
            compensate={"type": "log", "config": {"message": "undo"}}), ("compensate",),
            id="compensate-added"),
        pytest.param(lambda d: (node(d, "load").pop("type"),
                                node(d, "load").update(blueprint="bp@1")),
                     ("blueprint", "type"), id="kind-change"),
        pytest.param(lambda d: node(d, "fetch")["config"].update(method="GET", url=1),
                     ("config.url",), id="type-of-value"),
    ],
)
def test_node_changes_with_field_paths(mutate, expected):
    d = diff_graphs(BASE, edit(m=mutate))
    assert d.nodes_changed == (NodeChange("fetch" if "fetch" in str(d.nodes_changed)
                                          else "load", expected),)
    assert not (d.nodes_added or d.nodes_removed or d.edges_added or d.edges_removed)


def test_add_and_remove_nodes_and_edges():
    new = edit(
        add=lambda d: d["nodes"].append({"id": "notify", "type": "log",
                                         "config": {"message": "done"}}),
        remove=lambda d: d["nodes"].remove(node(d, "load")),
        edges=lambda d: d.update(edges=[{"from": "fetch", "to": "notify"}]),
    )
    d = diff_graphs(BASE, new)
    assert d.nodes_added == ("notify",)
    assert d.nodes_removed == ("load",)
    assert d.edges_added == (EdgeRef("fetch", "notify"),)
    assert d.edges_removed == (EdgeRef("fetch", "load"),)
    assert d.summary() == "1 node added, 0 changed, 1 removed; 1 edge added, 1 removed"


def test_edge_attribute_changes():
    new = edit(e=lambda d: d["edges"][0].update(delivery="landing"))
    d = diff_graphs(BASE, new)
    assert d.edges_changed == (EdgeChange("fetch", "load", ("delivery",)),)
    assert not d.edges_added and not d.edges_removed and not d.is_empty


def test_params_changed():
    new = edit(p=lambda d: d.update(params={"region": "eu-west", "extra": True}))
    assert diff_graphs(BASE, new).params_changed == ("extra", "region", "size")


def test_summary_and_to_dict():
    new = edit(
        add=lambda d: d["nodes"].append({"id": "x", "type": "noop"}),
        change=lambda d: node(d, "fetch").update(group="egress"),
        change2=lambda d: node(d, "load").update(replicas=2),
        edge=lambda d: d["edges"].append({"from": "load", "to": "x"}),
    )
    d = diff_graphs(BASE, new)
    assert d.summary() == "1 node added, 2 changed, 0 removed; 1 edge added"
    assert json.loads(json.dumps(d.to_dict())) == {
        "nodes_added": ["x"],
        "nodes_removed": [],
        "nodes_changed": [{"id": "fetch", "fields": ["group"]},
                          {"id": "load", "fields": ["replicas"]}],
        "edges_added": [{"from": "load", "to": "x"}],
        "edges_removed": [],
        "edges_changed": [],
        "params_changed": [],
        "is_empty": False,
        "summary": "1 node added, 2 changed, 0 removed; 1 edge added",
    }


def test_pure_and_accepts_graphs():
    old, new = json.loads(json.dumps(BASE)), edit(g=lambda d: node(d, "fetch").update(group="b"))
    snapshot = (json.dumps(old), json.dumps(new))
    d = diff_graphs(parse_graph(old), parse_graph(new))
    assert d.nodes_changed == (NodeChange("fetch", ("group",)),)
    assert (json.dumps(old), json.dumps(new)) == snapshot


@pytest.mark.parametrize("junk", [None, [], {"nodes": "x"}, {"nodes": [1, {"id": 2}]}],
                         ids=["none", "list", "nodes-string", "junk-nodes"])
def test_malformed_documents_diff_as_empty(junk):
    d = diff_graphs(junk, BASE)
    assert d.nodes_added == ("fetch", "load")
