import json
import random
import sys

import pytest

from pipelines.errors import CycleError, GraphError, NodeNotFound
from pipelines.graph import (
    Edge,
    Graph,
    RetryPolicy,
    canonical_document,
    canonical_json,
    graph_digest,
    load_document,
    parse_graph,
)

DOC = {
    "params": {"region": "us-east"},
    "nodes": [
        {"id": "refresh", "type": "http", "config": {"url": "https://example.test/token",
                                                      "method": "POST"},
         "group": "ingest", "retry": {"max_attempts": 3}, "timeout_s": 30,
         "compensate": {"type": "http", "config": {"url": "https://example.test/revoke"}}},
        {"id": "harvest", "blueprint": "fanout-ingest@2",
         "params": {"source": "{{ .steps.refresh.output.token }}"}},
        {"id": "load", "type": "noop"},
    ],
    "edges": [
        {"from": "refresh", "to": "harvest"},
        {"from": "harvest", "to": "load", "delivery": "landing"},
    ],
}

YAML_DOC = """
# same graph, other words
edges:
  - {from: harvest, to: load, delivery: landing}
  - {to: harvest, from: refresh}
nodes:
  - id: load
    type: noop
  - id: refresh
    type: http
    timeout_s: 30
    config: {method: POST, url: "https://example.test/token"}
    group: ingest
    retry: {max_attempts: 3}
    compensate: {type: http, config: {url: "https://example.test/revoke"}}
  - id: harvest
    blueprint: fanout-ingest@2
    params: {source: "{{ .steps.refresh.output.token }}"}
params: {region: us-east}
"""


def test_parse_graph_builds_typed_model():
    g = parse_graph(DOC)
    refresh = g.node("refresh")
    assert refresh.kind == "type" and refresh.type == "http"
    assert refresh.retry == RetryPolicy(max_attempts=3)
    assert refresh.compensate.type == "http"
    assert refresh.timeout_s == 30 and refresh.group == "ingest"
    harvest = g.node("harvest")
    assert harvest.kind == "blueprint"
    assert (harvest.blueprint_name, harvest.blueprint_version) == ("fanout-ingest", 2)
    assert g.edges[1] == Edge("harvest", "load", "landing", None)
    assert g.params == {"region": "us-east"}


def test_parse_graph_does_not_mutate_input():
    doc = json.loads(json.dumps(DOC))
    g = parse_graph(doc)
    g.node("refresh").config["url"] = "changed"
    assert doc == DOC


def test_navigation():
    g = parse_graph({
        "nodes": [{"id": i, "type": "noop"} for i in ("d", "b", "c", "a")],
        "edges": [{"from": "a", "to": "b"}, {"from": "a", "to": "c"},
                  {"from": "b", "to": "d"}, {"from": "c", "to": "d"}],
    })
    assert g.successors("a") == ("b", "c")
    assert g.predecessors("d") == ("b", "c")
    assert g.sources() == ("a",)
    assert g.sinks() == ("d",)
    # b and c are both ready after a; document order (b before c) breaks the tie
    assert g.topological_order() == ("a", "b", "c", "d")
    assert g.generations() == (("a",), ("b", "c"), ("d",))
    assert "a" in g and "zz" not in g and len(g) == 4
    with pytest.raises(NodeNotFound, match="unknown node 'zz'"):
        g.node("zz")
    with pytest.raises(KeyError):
        g.successors("zz")


def test_topological_order_is_stable_by_document_order():
    nodes = [{"id": i, "type": "noop"} for i in ("z", "y", "x")]
    g = parse_graph({"nodes": nodes, "edges": []})
    assert g.topological_order() == ("z", "y", "x")


def test_topological_order_raises_cycle_error_on_hand_built_graph():
    from pipelines.graph import Node

    g = Graph({}, (Node("a", type="noop"), Node("b", type="noop")),
              (Edge("a", "b"), Edge("b", "a")))
    with pytest.raises(CycleError) as info:
        g.topological_order()
    assert info.value.cycle == ["a", "b", "a"]


def test_deep_chain_does_not_hit_recursion_limit():
    n = sys.getrecursionlimit() + 100
    ids = [f"n{i}" for i in range(n)]
    g = parse_graph({"nodes": [{"id": i, "type": "noop"} for i in ids],
                     "edges": [{"from": a, "to": b} for a, b in zip(ids, ids[1:])]})
    assert g.topological_order()[-1] == ids[-1]


def test_to_dict_round_trips():
    g = parse_graph(DOC)
    again = parse_graph(g.to_dict())
    assert again == g
    assert graph_digest(g.to_dict()) == graph_digest(DOC)


def test_parse_graph_collects_all_issues():
    with pytest.raises(GraphError) as info:
        parse_graph({
            "nodes": [{"id": "a", "type": "noop", "replicas": 0},
                      {"id": "B!", "type": "noop"},
                      {"id": "c", "type": "noop", "retry": {"backoff": "linear"}}],
            "edges": [{"from": "a", "to": "zz"}],
        })
    paths = [(i.path, i.code) for i in info.value.issues]
    assert paths == [
        ("edges[0].to", "dangling_edge"),
        ("nodes[0].replicas", "invalid_field"),
        ("nodes[1].id", "invalid_id"),
        ("nodes[2].retry.backoff", "invalid_field"),
    ]
    assert "edge to unknown node 'zz'" in str(info.value)


def test_parse_graph_raises_cycle_error_with_the_cycle():
    with pytest.raises(CycleError) as info:
        parse_graph({"nodes": [{"id": i, "type": "noop"} for i in "abc"],
                     "edges": [{"from": "a", "to": "b"}, {"from": "b", "to": "c"},
                               {"from": "c", "to": "a"}]})
    assert info.value.cycle == ["a", "b", "c", "a"]
    assert [i.code for i in info.value.issues] == ["cycle"]


def test_expanded_ids_only_when_asked():
    doc = {"nodes": [{"id": "harvest/fetch", "type": "noop"}], "edges": []}
    with pytest.raises(GraphError):
        parse_graph(doc)
    assert parse_graph(doc, expanded=True).node_ids() == ("harvest/fetch",)


# ------------------------------------------------------------------ documents


def test_load_document_json_and_yaml_agree():
    assert load_document(json.dumps(DOC)) == DOC
    assert canonical_document(load_document(YAML_DOC)) == canonical_document(DOC)
    assert load_document(json.dumps(DOC).encode()) == DOC


def test_load_document_keeps_dates_as_text():
    assert load_document("nodes: []\nwhen: 2024-01-01\n")["when"] == "2024-01-01"


@pytest.mark.parametrize(
    "text, fragment",
    [
        pytest.param("nodes: [\n  - id: a\n", "line", id="yaml-syntax-names-line"),
        pytest.param('{"nodes": [1, 2,]', "invalid JSON at line 1", id="json-syntax"),
        pytest.param("- a\n- b\n", "got a list", id="top-level-list"),
        pytest.param("", "got nothing", id="empty"),
        pytest.param("42", "got a number", id="scalar"),
        pytest.param(b"\xff\xfe\x00", "not UTF-8", id="bad-bytes"),
        pytest.param("1: a\n", "keys must be strings", id="non-string-key"),
        pytest.param("nodes: []\nx: .nan\n", "not a JSON number", id="yaml-nan"),
        pytest.param("nodes: []\nx: [.inf]\n", "x[0]", id="yaml-inf-names-path"),
    ],
)
def test_load_document_errors(text, fragment):
    with pytest.raises(GraphError) as info:
        load_document(text)
    (issue,) = info.value.issues
    assert issue.code == "invalid_document" and issue.path == ""
    assert fragment in issue.message


# ------------------------------------------------------------------ digest

def _shuffled(doc, seed):
    rnd = random.Random(seed)
    out = json.loads(json.dumps(doc))
    rnd.shuffle(out["nodes"])
    rnd.shuffle(out["edges"])
    # rebuild dicts with reversed key order
    out["nodes"] = [dict(reversed(list(n.items()))) for n in out["nodes"]]
    return dict(reversed(list(out.items())))


@pytest.mark.parametrize(
    "variant",
    [
        pytest.param(lambda: DOC, id="same"),
        pytest.param(lambda: _shuffled(DOC, 1), id="list-and-key-order"),
        pytest.param(lambda: _shuffled(DOC, 2), id="list-and-key-order-2"),
        pytest.param(lambda: json.dumps(DOC, indent=4), id="json-whitespace"),
        pytest.param(lambda: json.dumps(DOC, sort_keys=True, separators=(",", ":")),
                     id="json-compact"),
        pytest.param(lambda: YAML_DOC, id="yaml"),
        pytest.param(lambda: load_document(YAML_DOC), id="yaml-loaded"),
    ],
)
def test_digest_is_stable(variant):
    assert graph_digest(variant()) == graph_digest(DOC)


def test_digest_format_and_sensitivity():
    digest = graph_digest(DOC)
    assert digest.startswith("sha256:") and len(digest) == len("sha256:") + 64
    changed = json.loads(json.dumps(DOC))
    changed["nodes"][0]["config"]["url"] = "https://example.test/other"
    assert graph_digest(changed) != digest


def test_canonical_form_does_not_inject_defaults_and_keeps_unknown_keys():
    doc = {"x-owner": "team-a", "nodes": [{"id": "b", "type": "noop"}, {"id": "a", "type": "noop"}],
           "edges": [{"to": "b", "from": "a"}]}
    canon = canonical_document(doc)
    assert canon["nodes"] == [{"id": "a", "type": "noop"}, {"id": "b", "type": "noop"}]
    assert canon["x-owner"] == "team-a"
    assert canonical_json(doc) == (
        '{"edges":[{"from":"a","to":"b"}],"nodes":[{"id":"a","type":"noop"},'
        '{"id":"b","type":"noop"}],"x-owner":"team-a"}'
    )
    assert doc["nodes"][0]["id"] == "b"  # input untouched


def test_canonical_form_tolerates_malformed_documents():
    assert graph_digest({"nodes": [1, {"id": 2}, "x"], "edges": "nope"}).startswith("sha256:")


# ------------------------------------------------------------------ retry policy


@pytest.mark.parametrize(
    "policy, attempt, expected",
    [
        pytest.param(RetryPolicy(jitter=False), 1, 1.0, id="exp-first"),
        pytest.param(RetryPolicy(jitter=False), 2, 2.0, id="exp-second"),
        pytest.param(RetryPolicy(jitter=False), 4, 8.0, id="exp-fourth"),
        pytest.param(RetryPolicy(jitter=False), 6, 30.0, id="exp-capped"),
        pytest.param(RetryPolicy(jitter=False), 10_000, 30.0, id="exp-huge-attempt"),
        pytest.param(RetryPolicy(backoff="fixed", initial_delay_s=5, jitter=False), 7, 5.0,
                     id="fixed"),
        pytest.param(RetryPolicy(backoff="fixed", initial_delay_s=50, max_delay_s=10,
                                 jitter=False), 1, 10.0, id="fixed-capped"),
        pytest.param(RetryPolicy(initial_delay_s=0, jitter=False), 3, 0.0, id="zero"),
    ],
)
def test_retry_delays(policy, attempt, expected):
    assert policy.delay_for(attempt) == expected


def test_retry_jitter_is_full_and_reproducible():
    policy = RetryPolicy(initial_delay_s=2, max_delay_s=100)
    delays = [policy.delay_for(3, random.Random(seed)) for seed in range(200)]
    assert all(0 <= d <= 8 for d in delays)
    assert max(delays) > 6 and min(delays) < 2  # spread over the whole range
    assert policy.delay_for(3, random.Random(7)) == policy.delay_for(3, random.Random(7))


def test_retry_should_retry_and_bad_attempt():
    policy = RetryPolicy(max_attempts=3)
    assert [policy.should_retry(a) for a in (1, 2, 3)] == [True, True, False]
    with pytest.raises(ValueError):
        policy.delay_for(0)


def test_model_objects_are_hashable_despite_dict_fields():
    g = parse_graph(DOC)
    assert len({g, parse_graph(DOC)}) == 1
    assert len({n for n in g.nodes}) == 3
    hash(g.node("refresh").compensate)


def test_graph_error_summarizes_and_serializes():
    from pipelines.errors import Issue

    err = GraphError([Issue("nodes[0].id", "bad id", "invalid_id"),
                      Issue("edges[0].to", "unknown", "dangling_edge")])
    assert str(err) == "nodes[0].id: bad id (and 1 more issue)"
    assert err.issues[0].to_dict() == {"path": "nodes[0].id", "message": "bad id",
                                       "code": "invalid_id"}
    assert isinstance(CycleError(["a", "b", "a"]), GraphError)
    assert "cycle 'a' -> 'b' -> 'a'" in str(CycleError(["a", "b", "a"]))
