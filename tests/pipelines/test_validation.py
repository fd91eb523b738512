import json

import pytest

from pipelines.errors import ISSUE_CODES, GraphError
from pipelines.steps import Field, StepType
from pipelines.validation import ValidationReport, validate_graph


def noop(node_id, **extra):
    return {"id": node_id, "type": "noop", **extra}


def graph(*nodes, edges=(), **top):
    return {"nodes": list(nodes), "edges": list(edges), **top}


def edge(a, b, **extra):
    return {"from": a, "to": b, **extra}


def found(report: ValidationReport) -> list[tuple[str, str]]:
    return [(i.path, i.code) for i in report.issues]


VALID = graph(
    {"id": "fetch", "type": "http", "config": {"url": "https://example.test/x",
                                               "headers": {"Authorization": "Bearer {{ .params.token }}"}}},
    {"id": "check", "type": "condition", "config": {"expression": ".steps.fetch.output.status == 200"}},
    {"id": "ok", "type": "log", "config": {"message": "got {{ .steps.fetch.output.body | length }}"}},
    {"id": "bad", "type": "fail", "compensate": {"type": "log", "config": {"message": "undo"}}},
    {"id": "sub", "blueprint": "fanout-ingest@2", "params": {"src": "{{ .params.src }}"}},
    {"id": "tpl", "template": "http-get"},
    edges=[edge("fetch", "check"), edge("check", "ok", branch="true"),
           edge("check", "bad", branch="false"), edge("ok", "sub"), edge("sub", "tpl")],
    params={"token": "t", "src": "s3://x"},
)


def test_valid_graph_is_ok():
    report = validate_graph(VALID)
    assert report.ok, report.issues
    assert report.graph is not None
    assert report.graph.topological_order()[0] == "fetch"
    assert report.to_dict() == {"ok": True, "issues": []}
    assert report.raise_for_issues() is report.graph


def test_validate_does_not_mutate_input():
    doc = json.loads(json.dumps(VALID))
    validate_graph(doc)
    assert doc == VALID


CASES = [
    pytest.param(graph(), [("nodes", "empty_graph")], id="empty-graph"),
    pytest.param({"edges": []}, [("nodes", "empty_graph")], id="no-nodes-key"),
    pytest.param(graph(noop("Bad Id")), [("nodes[0].id", "invalid_id")], id="invalid-id"),
    pytest.param(graph(noop("x" * 65)), [("nodes[0].id", "invalid_id")], id="id-too-long"),
    pytest.param(graph({"type": "noop"}), [("nodes[0].id", "invalid_id")], id="missing-id"),
    pytest.param(graph(noop(7)), [("nodes[0].id", "invalid_id")], id="id-not-string"),
    pytest.param(graph(noop("a"), noop("a")), [("nodes[1].id", "duplicate_id")],
                 id="duplicate-id"),
    pytest.param(graph(noop("a"), edges=[edge("a", "ghost")]),
                 [("edges[0].to", "dangling_edge")], id="dangling-to"),
    pytest.param(graph(noop("a"), edges=[edge("ghost", "a")]),
                 [("edges[0].from", "dangling_edge")], id="dangling-from"),
    pytest.param(graph(noop("a"), edges=[edge("a", "a")]), [("edges[0]", "self_loop")],
                 id="self-loop"),
    pytest.param(graph(noop("a"), noop("b"), noop("c"),
                       edges=[edge("a", "b"), edge("b", "c"), edge("c", "a")]),
                 [("edges[0]", "cycle")], id="cycle"),
    pytest.param(graph(noop("a"), noop("b"), noop("c"), noop("d"),
                       edges=[edge("a", "b"), edge("b", "a"), edge("c", "d"), edge("d", "c")]),
                 [("edges[0]", "cycle"), ("edges[2]", "cycle")], id="two-cycles"),
    pytest.param(graph({"id": "a", "type": "teleport"}), [("nodes[0].type", "unknown_step_type")],
                 id="unknown-step-type"),
    pytest.param(graph({"id": "a", "type": "http"}), [("nodes[0].config.url", "missing_config")],
                 id="missing-config"),
    pytest.param(graph({"id": "a", "type": "http", "config": {"url": 5}}),
                 [("nodes[0].config.url", "invalid_config")], id="config-wrong-type"),
    pytest.param(graph({"id": "a", "type": "http", "config": {"url": "https://x.test",
                                                              "method": "FETCH"}}),
                 [("nodes[0].config.method", "invalid_config")], id="config-bad-choice"),
    pytest.param(graph({"id": "a", "type": "noop", "config": {"surprise": 1}}),
                 [("nodes[0].config.surprise", "invalid_config")], id="config-unknown-key"),
    pytest.param(graph({"id": "a", "type": "delay", "config": {"seconds": 7200}}),
                 [("nodes[0].config.seconds", "invalid_config")], id="config-out-of-range"),
    pytest.param(graph({"id": "a", "type": "python", "config": {"callable": "os.system"}}),
                 [("nodes[0].config.callable", "invalid_config")], id="python-unknown-callable"),
    pytest.param(graph({"id": "a", "type": "jq", "config": {"program": ".a | map("}}),
                 [("nodes[0].config.program", "invalid_jq")], id="jq-program"),
    pytest.param(graph({"id": "a", "type": "condition", "config": {"expression": "=="}}),
                 [("nodes[0].config.expression", "invalid_jq")], id="condition-expression"),
    pytest.param(graph({"id": "a", "type": "http", "config": {
        "url": "https://x.test", "headers": {"Authorization": "Bearer {{ .steps.x | }}"}}}),
                 [("nodes[0].config.headers.Authorization", "invalid_jq")], id="template-jq"),
    pytest.param(graph({"id": "a", "type": "log", "config": {"message": "hi {{ .x "}}),
                 [("nodes[0].config.message", "invalid_jq")], id="template-unterminated"),
    pytest.param(graph({"id": "a", "blueprint": "bp@1", "params": {"p": ["{{ ][ }}"]}}),
                 [("nodes[0].params.p[0]", "invalid_jq")], id="template-in-blueprint-params"),
    pytest.param(graph({"id": "a", "type": "condition", "config": {"expression": "true"}},
                       noop("b"), edges=[edge("a", "b")]),
                 [("edges[0].branch", "invalid_branch")], id="condition-edge-without-branch"),
    pytest.param(graph(noop("a"), noop("b"), edges=[edge("a", "b", branch="true")]),
                 [("edges[0].branch", "invalid_branch")], id="branch-on-non-condition"),
    pytest.param(graph({"id": "a", "type": "condition", "config": {"expression": "true"}},
                       noop("b"), edges=[edge("a", "b", branch="maybe")]),
                 [("edges[0].branch", "invalid_branch")], id="branch-bad-value"),
    pytest.param(graph({"id": "a", "blueprint": "no-version"}),
                 [("nodes[0].blueprint", "invalid_reference")], id="blueprint-ref"),
    pytest.param(graph({"id": "a", "blueprint": "bp@0"}),
                 [("nodes[0].blueprint", "invalid_reference")], id="blueprint-version-zero"),
    pytest.param(graph({"id": "a", "template": "has space"}),
                 [("nodes[0].template", "invalid_reference")], id="template-ref"),
    pytest.param(graph({"id": "a", "type": "noop", "blueprint": "bp@1"}),
                 [("nodes[0]", "invalid_field")], id="type-and-blueprint"),
    pytest.param(graph({"id": "a"}), [("nodes[0]", "invalid_field")], id="no-kind"),
    pytest.param(graph(noop("a", replicas=0)), [("nodes[0].replicas", "invalid_field")],
                 id="replicas-zero"),
    pytest.param(graph(noop("a", replicas=True)), [("nodes[0].replicas", "invalid_field")],
                 id="replicas-bool"),
    pytest.param(graph(noop("a", timeout_s=0)), [("nodes[0].timeout_s", "invalid_field")],
                 id="timeout-zero"),
    pytest.param(graph(noop("a", group="")), [("nodes[0].group", "invalid_field")],
                 id="group-empty"),
    pytest.param(graph(noop("a", interruptible="yes")), [("nodes[0].interruptible", "invalid_field")],
                 id="interruptible-not-bool"),
    pytest.param(graph(noop("a", retry={"max_attempts": 0, "jitter": "yes", "tries": 3})),
                 [("nodes[0].retry.jitter", "invalid_field"),
                  ("nodes[0].retry.max_attempts", "invalid_field"),
                  ("nodes[0].retry.tries", "invalid_field")], id="retry-fields"),
    pytest.param(graph(noop("a", retyr={})), [("nodes[0].retyr", "invalid_field")],
                 id="unknown-node-field"),
    pytest.param(graph(noop("a", params={"x": 1})), [("nodes[0].params", "invalid_field")],
                 id="params-on-step-node"),
    pytest.param(graph(noop("a", config=[1])), [("nodes[0].config", "invalid_field")],
                 id="config-not-mapping"),
    pytest.param(graph(noop("a", compensate={"type": "teleport"})),
                 [("nodes[0].compensate.type", "unknown_step_type")], id="compensate-unknown-type"),
    pytest.param(graph(noop("a", compensate={"type": "http", "config": {}})),
                 [("nodes[0].compensate.config.url", "missing_config")],
                 id="compensate-missing-config"),
    pytest.param(graph(noop("a", compensate={"config": {}})),
                 [("nodes[0].compensate.type", "invalid_field")], id="compensate-no-type"),
    pytest.param(graph(noop("a"), noop("b"), edges=[edge("a", "b", delivery="carrier-pigeon")]),
                 [("edges[0].delivery", "invalid_field")], id="edge-delivery"),
    pytest.param(graph(noop("a"), noop("b"), edges=[edge("a", "b"), edge("a", "b")]),
                 [("edges[1]", "duplicate_edge")], id="duplicate-edge"),
    pytest.param(graph(noop("a"), edges=[{"from": "a"}]), [("edges[0].to", "invalid_field")],
                 id="edge-missing-to"),
    pytest.param(graph(noop("a"), edges=["a->b"]), [("edges[0]", "invalid_field")],
                 id="edge-not-mapping"),
    pytest.param(graph(noop("a"), params=[1]), [("params", "invalid_field")], id="params-list"),
    pytest.param({"nodes": "a,b"}, [("nodes", "invalid_field")], id="nodes-not-list"),
    pytest.param(graph("a"), [("nodes[0]", "invalid_field")], id="node-not-mapping"),
    pytest.param(None, [("", "invalid_document")], id="document-null"),
    pytest.param([noop("a")], [("", "invalid_document")], id="document-list"),
    pytest.param("nodes: []", [("", "invalid_document")], id="document-text"),
]


@pytest.mark.parametrize("doc, expected", CASES)
def test_each_error_kind(doc, expected):
    report = validate_graph(doc)
    assert found(report) == expected
    assert not report.ok and report.graph is None
    assert all(i.code in ISSUE_CODES for i in report.issues)


def test_all_problems_are_reported_in_path_order():
    doc = graph(
        noop("a"), noop("a"),
        {"id": "c", "type": "http", "config": {"url": 1}},
        {"id": "d", "type": "teleport"},
        *[noop(f"n{i}") for i in range(8)],
        {"id": "late", "type": "jq", "config": {"program": "[["}},
        edges=[edge("a", "zz"), edge("c", "c")],
    )
    assert found(validate_graph(doc)) == [
        ("edges[0].to", "dangling_edge"),
        ("edges[1]", "self_loop"),
        ("nodes[1].id", "duplicate_id"),
        ("nodes[2].config.url", "invalid_config"),
        ("nodes[3].type", "unknown_step_type"),
        ("nodes[12].config.program", "invalid_jq"),  # natural order: 12 after 3
    ]


@pytest.mark.parametrize(
    "doc, fragments",
    [
        pytest.param(graph(noop("a"), edges=[edge("a", "x")]),
                     ["edge to unknown node 'x'", "add the node or remove the edge"],
                     id="dangling"),
        pytest.param(graph(noop("a"), noop("b"), edges=[edge("a", "b"), edge("b", "a")]),
                     ["'a' -> 'b' -> 'a'", "remove one of these edges"], id="cycle"),
        pytest.param(graph({"id": "a", "type": "teleport"}), ["'teleport'", "noop", "http"],
                     id="unknown-type-lists-known"),
        pytest.param(graph({"id": "a", "type": "python", "config": {"callable": "nope"}}),
                     ["'nope'", "echo", "add"], id="unknown-callable-lists-registered"),
        pytest.param(graph(noop("a"), noop("a")), ["'a'", "nodes[0]", "rename"],
                     id="duplicate-names-first"),
    ],
)
def test_messages_name_the_culprit_and_the_fix(doc, fragments):
    message = " ".join(i.message for i in validate_graph(doc).issues)
    for fragment in fragments:
        assert fragment in message


@pytest.mark.parametrize(
    "config",
    [
        pytest.param({"url": "{{ .params.url }}"}, id="templated-string"),
        pytest.param({"url": "https://x.test", "timeout_s": "{{ .params.t }}"},
                     id="templated-number"),
        pytest.param({"url": "https://x.test", "method": None}, id="null-means-default"),
    ],
)
def test_templates_accepted_for_any_type(config):
    assert validate_graph(graph({"id": "a", "type": "http", "config": config})).ok


def test_yaml_boolean_branch_is_accepted():
    doc = graph({"id": "c", "type": "condition", "config": {"expression": "true"}}, noop("b"),
                edges=[edge("c", "b", branch=True)])
    report = validate_graph(doc)
    assert report.ok
    assert report.graph.edges[0].branch == "true"


def test_custom_step_types():
    class Shout(StepType):
        name = "shout"
        config_schema = {"text": Field("string", required=True)}

    report = validate_graph(graph({"id": "a", "type": "shout"}, noop("b")),
                            step_types={"shout": Shout})
    assert found(report) == [("nodes[0].config.text", "missing_config"),
                             ("nodes[1].type", "unknown_step_type")]
    by_name = validate_graph(graph(noop("a")), step_types=["noop"])
    assert by_name.ok


def test_expanded_ids():
    doc = graph(noop("bp/a"), noop("bp/b"), edges=[edge("bp/a", "bp/b")])
    assert found(validate_graph(doc)) == [("nodes[0].id", "invalid_id"),
                                          ("nodes[1].id", "invalid_id")]
    assert validate_graph(doc, expanded=True).ok


def test_report_raise_and_dict():
    report = validate_graph(graph(noop("a"), edges=[edge("a", "b")]))
    with pytest.raises(GraphError) as info:
        report.raise_for_issues()
    assert info.value.issues == report.issues
    assert report.to_dict()["issues"][0] == {
        "path": "edges[0].to", "code": "dangling_edge",
        "message": "edge to unknown node 'b'; add the node or remove the edge",
    }
    json.dumps(report.to_dict())


@pytest.mark.parametrize(
    "doc",
    [
        pytest.param({"nodes": [{"id": {"x": 1}, "type": ["noop"], "config": "x",
                                 "retry": [], "compensate": 3, "description": 5}]}, id="junk-node"),
        pytest.param({"nodes": [noop("a")], "edges": [{"from": 1, "to": None, "branch": []}]},
                     id="junk-edge"),
        pytest.param({"nodes": [noop("a")], "edges": {"from": "a"}}, id="edges-mapping"),
        pytest.param(42, id="number"),
        pytest.param({"nodes": [{"id": "a", "type": "http", "config": {"url": {"$secret": 1},
                                                                      "headers": {"x": 1}}}]},
                     id="junk-config"),
    ],
)
def test_never_raises_on_junk(doc):
    report = validate_graph(doc)
    assert not report.ok
    assert all(i.code in ISSUE_CODES for i in report.issues)
