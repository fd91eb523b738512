"""Blueprint and template expansion: stable ids, nesting, ports, params, recursion."""

import copy

import pytest

from pipelines.blueprints import expand_graph, parse_ref


def fanout(url="https://example.test/a"):
    return {
        "params": {"source": {"required": True}, "batch": {"default": 10}},
        "inputs": [{"name": "in", "to": ["fetch"]}],
        "outputs": [{"name": "out", "from": "merge"}],
        "nodes": [
            {"id": "fetch", "type": "http", "config": {"url": url, "json": {"src": "{{ .params.source }}"}}},
            {"id": "merge", "type": "log",
             "config": {"message": "got {{ .steps.fetch.output.n }} of {{ .params.batch }}"}},
        ],
        "edges": [{"from": "fetch", "to": "merge"}],
    }


def two_ports():
    return {
        "params": {},
        "inputs": [{"name": "left", "to": ["a"]}, {"name": "right", "to": ["b"]}],
        "outputs": [{"name": "out", "from": "a"}, {"name": "err", "from": "b"}],
        "nodes": [{"id": "a", "type": "noop"}, {"id": "b", "type": "noop"}],
        "edges": [],
    }


def graph(*nodes, edges=()):
    return {"nodes": list(nodes), "edges": list(edges)}


SRC = {"id": "src", "type": "noop"}


def expand(doc, blueprints=None, templates=None):
    return expand_graph(doc, blueprints=blueprints or {("fanout", 1): fanout()}, templates=templates or {})


def ids(expansion):
    return sorted(n.job_id for n in expansion.nodes)


def codes(expansion):
    return sorted((i.code, i.path) for i in expansion.issues)


def by_id(expansion):
    return {n.job_id: n for n in expansion.nodes}


def test_parse_ref():
    assert parse_ref("fanout-ingest@2") == ("fanout-ingest", 2)
    assert parse_ref("fanout") is None
    assert parse_ref("x@0") is None


def test_instance_expands_to_alias_prefixed_jobs_and_port_edges():
    doc = graph(SRC, {"id": "harvest", "blueprint": "fanout@1", "params": {"source": "s3://a"}},
                {"id": "load", "type": "noop"},
                edges=[{"from": "src", "to": "harvest"}, {"from": "harvest", "to": "load", "delivery": "landing"}])
    e = expand(doc)
    assert e.issues == ()
    assert ids(e) == ["harvest/fetch", "harvest/merge", "load", "src"]
    assert e.aliases == {"harvest"}
    pairs = {(x.src, x.dst, x.delivery) for x in e.edges}
    assert pairs == {("src", "harvest/fetch", "local"), ("harvest/fetch", "harvest/merge", "local"),
                     ("harvest/merge", "load", "landing")}
    assert by_id(e)["harvest/fetch"].path == "nodes[1](fanout@1).nodes[0]"


def test_ids_are_stable_across_blueprint_config_edits():
    doc = graph(SRC, {"id": "harvest", "blueprint": "fanout@1", "params": {"source": "a"}},
                edges=[{"from": "src", "to": "harvest"}])
    before = expand(doc, {("fanout", 1): fanout("https://example.test/a")})
    edited = fanout("https://example.test/b")
    edited["nodes"][1]["config"]["level"] = "debug"
    after = expand(doc, {("fanout", 1): edited})
    assert ids(before) == ids(after)
    assert by_id(after)["harvest/fetch"].config["url"] == "https://example.test/b"


def test_params_substitute_with_type_and_defaults_and_steps_are_rewritten():
    doc = graph(SRC, {"id": "harvest", "blueprint": "fanout@1",
                      "params": {"source": {"bucket": "b"}}}, edges=[{"from": "src", "to": "harvest"}])
    nodes = by_id(expand(doc))
    assert nodes["harvest/fetch"].config["json"] == {"src": {"bucket": "b"}}
    assert nodes["harvest/merge"].config["message"] == 'got {{ .steps["harvest/fetch"].output.n }} of 10'


def test_param_value_is_rewritten_in_the_callers_scope_and_outputs_resolve():
    doc = graph(
        SRC,
        {"id": "harvest", "blueprint": "fanout@1", "params": {"source": "{{ .steps.src.output.token }}"}},
        {"id": "load", "type": "log", "config": {"message": "{{ .steps.harvest.output }}"}},
        edges=[{"from": "src", "to": "harvest"}, {"from": "harvest", "to": "load"}],
    )
    nodes = by_id(expand(doc))
    assert nodes["harvest/fetch"].config["json"] == {"src": "{{ .steps.src.output.token }}"}
    assert nodes["load"].config["message"] == '{{ .steps["harvest/merge"].output }}'


def test_input_doc_is_not_mutated():
    doc = graph(SRC, {"id": "harvest", "blueprint": "fanout@1", "params": {"source": "a"}},
                edges=[{"from": "src", "to": "harvest"}])
    bps = {("fanout", 1): fanout()}
    snapshot = copy.deepcopy((doc, bps))
    expand(doc, bps)
    assert (doc, bps) == snapshot


def test_nested_blueprints_prefix_every_level():
    outer = {
        "params": {"source": {}},
        "inputs": [{"name": "in", "to": ["inner"]}],
        "outputs": [{"name": "out", "from": "inner"}],
        "nodes": [{"id": "inner", "blueprint": "fanout@1", "params": {"source": "{{ .params.source }}"}}],
        "edges": [],
    }
    doc = graph(SRC, {"id": "harvest", "blueprint": "outer@1", "params": {"source": "x"}},
                {"id": "load", "type": "noop"},
                edges=[{"from": "src", "to": "harvest"}, {"from": "harvest", "to": "load"}])
    e = expand(doc, {("fanout", 1): fanout(), ("outer", 1): outer})
    assert e.issues == ()
    assert ids(e) == ["harvest/inner/fetch", "harvest/inner/merge", "load", "src"]
    assert e.aliases == {"harvest", "harvest/inner"}
    assert by_id(e)["harvest/inner/fetch"].aliases == ("harvest", "harvest/inner")
    assert by_id(e)["harvest/inner/fetch"].config["json"] == {"src": "x"}
    assert {(x.src, x.dst) for x in e.edges} >= {("src", "harvest/inner/fetch"), ("harvest/inner/merge", "load")}


@pytest.mark.parametrize(
    "bps, chain",
    [
        pytest.param({("a", 1): {"nodes": [{"id": "x", "blueprint": "a@1"}]}}, "a@1 -> a@1", id="direct"),
        pytest.param({("a", 1): {"nodes": [{"id": "x", "blueprint": "b@1"}]},
                      ("b", 1): {"nodes": [{"id": "y", "blueprint": "a@1"}]}}, "a@1 -> b@1 -> a@1", id="indirect"),
    ],
)
def test_recursive_blueprint_is_an_error_showing_the_chain(bps, chain):
    e = expand(graph({"id": "top", "blueprint": "a@1"}), bps)
    recursive = [i for i in e.issues if i.code == "recursive_blueprint"]
    assert len(recursive) == 1
    assert chain in recursive[0].message
    assert recursive[0].path.endswith(".blueprint")


def test_unknown_blueprint_version_and_template():
    doc = graph({"id": "a", "blueprint": "fanout@9"}, {"id": "b", "template": "nope"})
    assert codes(expand(doc)) == [("unknown_blueprint", "nodes[0].blueprint"),
                                  ("unknown_template", "nodes[1].template")]


def test_missing_and_unknown_params():
    doc = graph(SRC, {"id": "h", "blueprint": "fanout@1", "params": {"bogus": 1}},
                edges=[{"from": "src", "to": "h"}])
    assert codes(expand(doc)) == [("missing_param", "nodes[1].params.source"),
                                  ("unknown_param", "nodes[1].params.bogus")]


def test_complex_param_expression_inside_blueprint_is_rejected():
    bp = fanout()
    bp["nodes"][0]["config"]["url"] = "{{ .params.source | ascii_upcase }}"
    doc = graph(SRC, {"id": "h", "blueprint": "fanout@1", "params": {"source": "a"}},
                edges=[{"from": "src", "to": "h"}])
    assert codes(expand(doc, {("fanout", 1): bp})) == [("blueprint_param_expression",
                                                        "nodes[1](fanout@1).nodes[0].config.url")]


@pytest.mark.parametrize(
    "edges, expected",
    [
        pytest.param([{"from": "src", "to": "h"}], [("unknown_port", "edges[0].to")], id="ambiguous-input"),
        pytest.param([{"from": "src", "to": "h:middle"}, {"from": "src", "to": "h:left"},
                      {"from": "src", "to": "h:right"}], [("unknown_port", "edges[0].to")], id="unknown-port"),
        pytest.param([{"from": "src", "to": "h:left"}], [("unbound_port", "nodes[1]")], id="unbound-input"),
        pytest.param([{"from": "src", "to": "h:left"}, {"from": "src", "to": "h:right"},
                      {"from": "h", "to": "src"}], [("unknown_port", "edges[2].from")], id="ambiguous-output"),
        pytest.param([{"from": "src", "to": "h:left"}, {"from": "src", "to": "h:right"},
                      {"from": "ghost", "to": "src"}], [("dangling_edge", "edges[2].from")], id="dangling"),
        pytest.param([{"from": "src", "to": "h:left"}, {"from": "src", "to": "h:right"},
                      {"to": "src"}], [("unbound_channel", "edges[2].from")], id="no-producer"),
        pytest.param([{"from": "src:out", "to": "h:left"}, {"from": "src", "to": "h:right"}],
                     [("unknown_port", "edges[0].from")], id="port-on-plain-node"),
    ],
)
def test_port_errors(edges, expected):
    doc = graph(SRC, {"id": "h", "blueprint": "two@1"}, edges=edges)
    assert codes(expand(doc, {("two", 1): two_ports()})) == expected


def test_named_ports_route_to_their_inner_nodes():
    doc = graph(SRC, {"id": "h", "blueprint": "two@1"}, {"id": "sink", "type": "noop"},
                edges=[{"from": "src", "to": "h:left"}, {"from": "src", "to": "h:right"},
                       {"from": "h:err", "to": "sink"}])
    e = expand(doc, {("two", 1): two_ports()})
    assert e.issues == ()
    assert {(x.src, x.dst) for x in e.edges} == {("src", "h/a"), ("src", "h/b"), ("h/b", "sink")}


def test_template_node_takes_type_defaults_and_param_schema():
    templates = {"get": {"type": "http", "config": {"url": "{{ .params.base }}/x", "method": "GET"},
                         "param_schema": {"base": {"required": True}}}}
    doc = graph({"id": "t", "template": "get", "params": {"base": "https://e.test"},
                 "config": {"method": "POST"}})
    e = expand(doc, templates=templates)
    assert e.issues == ()
    node = by_id(e)["t"]
    assert (node.type, node.config) == ("http", {"url": "https://e.test/x", "method": "POST"})
    missing = expand(graph({"id": "t", "template": "get"}), templates=templates)
    assert codes(missing) == [("missing_param", "nodes[0].params.base")]


def test_instance_group_and_replicas_apply_to_inner_nodes_without_their_own():
    bp = fanout()
    bp["nodes"][1]["group"] = "batch"
    doc = graph(SRC, {"id": "h", "blueprint": "fanout@1", "params": {"source": "a"}, "group": "ingest",
                      "replicas": 2}, edges=[{"from": "src", "to": "h"}])
    nodes = by_id(expand(doc, {("fanout", 1): bp}))
    assert (nodes["h/fetch"].group, nodes["h/fetch"].group_path) == ("ingest", "nodes[1].group")
    assert (nodes["h/merge"].group, nodes["h/merge"].group_path) == ("batch", "nodes[1](fanout@1).nodes[1].group")
    assert nodes["h/fetch"].replicas == 2


@pytest.mark.parametrize(
    "value, ok",
    [("s3://a", True), (3, False), ("{{ .steps.src.output }}", True), ({"$secret": "key"}, True)],
)
def test_param_type_is_checked_unless_templated(value, ok):
    bp = fanout()
    bp["params"]["source"]["type"] = "string"
    doc = graph(SRC, {"id": "h", "blueprint": "fanout@1", "params": {"source": value}},
                edges=[{"from": "src", "to": "h"}])
    assert codes(expand(doc, {("fanout", 1): bp})) == ([] if ok else [("invalid_param", "nodes[1].params.source")])
