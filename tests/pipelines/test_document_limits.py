"""Hostile documents are refused cheaply, naming the limit and where it was crossed."""
from __future__ import annotations

import json

import pytest
import yaml

from pipelines.document_limits import (
    DEFAULT_LIMITS,
    EVENT_SOURCES,
    DocumentLimits,
    bounded_yaml_loader,
    check_value,
    load_yaml,
)
from pipelines.errors import LIMIT_EXCEEDED, DocumentLimitError, GraphError
from pipelines.graph import load_document

# Each test is bounded loosely: a refused bomb takes milliseconds, an accepted one would take
# minutes and gigabytes (nine levels: 9**9 values from 593 bytes).
pytestmark = pytest.mark.timeout(20)


def billion_laughs(levels: int, width: int = 9) -> str:
    lines = ['lol0: &lol0 "lol"']
    for level in range(1, levels + 1):
        aliases = ", ".join([f"*lol{level - 1}"] * width)
        lines.append(f"lol{level}: &lol{level} [{aliases}]")
    lines.append("nodes: []\nedges: []")
    return "\n".join(lines)


@pytest.mark.parametrize("levels", [3, 6, 9])
def test_a_yaml_bomb_is_refused_by_its_alias_budget(levels):
    with pytest.raises(DocumentLimitError) as refused:
        load_document(billion_laughs(levels))
    assert refused.value.limit == "max_alias_nodes"
    assert refused.value.path == "lol3[4]"  # the first alias that crosses 500 expanded values
    assert refused.value.issues[0].code == LIMIT_EXCEEDED


def test_the_alias_budget_is_a_limit_of_its_own():
    generous = DocumentLimits(max_alias_nodes=10_000)
    assert load_document(billion_laughs(3), limits=generous)["lol3"][0][0] == ["lol"] * 9
    with pytest.raises(DocumentLimitError) as refused:
        load_document(billion_laughs(6), limits=generous)
    assert refused.value.limit == "max_alias_nodes"


def test_an_alias_expansion_counts_towards_the_node_limit():
    with pytest.raises(DocumentLimitError) as refused:
        load_document(billion_laughs(4), limits=DocumentLimits(max_nodes=1_000, max_alias_nodes=100_000))
    assert refused.value.limit == "max_nodes"


def test_reusing_a_small_block_with_aliases_is_fine():
    text = "retry: &retry {max_attempts: 3, backoff: fixed}\nnodes:\n" + "".join(
        f"  - {{id: n{i}, type: noop, retry: *retry}}\n" for i in range(20)
    ) + "edges: []\n"
    doc = load_document(text)
    assert doc["nodes"][19]["retry"] == {"max_attempts": 3, "backoff": "fixed"}


@pytest.mark.parametrize("text", ["a: &a [*a]\nnodes: []", "a: &a {b: *a}\nnodes: []", "a: &a [1, [2, *a]]"])
def test_an_alias_inside_its_own_anchor_is_refused(text):
    with pytest.raises(DocumentLimitError) as refused:
        load_document(text)
    assert "contains it" in refused.value.issues[0].message
    assert refused.value.path.startswith("a[") or refused.value.path.startswith("a.")


def test_an_alias_that_deepens_past_the_limit_is_refused():
    text = "deep: &deep [[[[1]]]]\nnodes: [[[[[[*deep]]]]]]"
    with pytest.raises(DocumentLimitError) as refused:
        load_document(text, limits=DocumentLimits(max_depth=8))
    assert refused.value.limit == "max_depth"
    assert refused.value.path == "nodes[0][0][0][0][0][0]"


@pytest.mark.parametrize("syntax", ["yaml-flow", "yaml-block", "json"])
@pytest.mark.parametrize("depth", [65, 5_000, 200_000])
def test_deep_nesting_is_refused_with_the_limit_and_path(syntax, depth):
    if syntax == "json":
        text = '{"nodes": ' + "[" * depth + "]" * depth + "}"
    elif syntax == "yaml-flow":
        text = "nodes: " + "[" * depth + "]" * depth
    else:
        text = "nodes:\n" + "".join(" " * i + "- \n" for i in range(min(depth, 2_000)))
    with pytest.raises(DocumentLimitError) as refused:
        load_document(text)
    assert refused.value.limit == "max_depth"
    # Past ~1,000 flow levels the C decoders (json's, libyaml's) give up on their own, before the
    # composer sees the depth: still refused as max_depth, without a path.
    if depth < 1_000 or syntax == "yaml-block":
        assert refused.value.path == "nodes" + "[0]" * 64


def test_a_document_at_the_depth_limit_loads():
    assert load_document('{"nodes": ' + "[" * 63 + "]" * 63 + "}")["nodes"]


@pytest.mark.parametrize("syntax", ["json", "yaml"])
def test_too_many_values_are_refused_with_the_limit_and_path(syntax):
    nodes = [{"id": f"n{i}"} for i in range(2_000)]
    text = json.dumps({"nodes": nodes}) if syntax == "json" else "nodes:\n" + "".join(f"- id: n{i}\n" for i in range(2_000))
    with pytest.raises(DocumentLimitError) as refused:
        load_document(text, limits=DocumentLimits(max_nodes=1_000))
    assert refused.value.limit == "max_nodes"
    assert refused.value.path.startswith("nodes[")


def test_a_huge_json_document_is_refused_quickly():
    text = json.dumps({"nodes": [{"id": f"n{i}", "config": {"v": i}} for i in range(100_000)]})
    with pytest.raises(DocumentLimitError) as refused:
        load_document(text)
    assert refused.value.limit == "max_nodes"


def test_check_value_walks_without_recursion():
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(DocumentLimitError) as refused:
        check_value({"x": deep}, path="graph")
    assert refused.value.path == "graph.x" + "[0]" * 64


def test_limit_errors_are_graph_errors_so_callers_that_catch_those_still_do():
    with pytest.raises(GraphError):
        load_document(billion_laughs(9))


def test_yaml_dates_can_load_as_dates_or_text():
    assert load_yaml("d: 2024-01-01")["d"] == "2024-01-01"
    assert load_yaml("d: 2024-01-01", dates_as_text=False)["d"].year == 2024


@pytest.mark.parametrize("events", sorted(EVENT_SOURCES))
@pytest.mark.parametrize("text,limit,path", [
    (billion_laughs(9), "max_alias_nodes", "lol3[4]"),
    ("a: &a [*a]", "max_depth", "a[0]"),
    ("nodes: " + "[" * 65 + "]" * 65, "max_depth", "nodes" + "[0]" * 64),
    ("nodes:\n" + "".join(" " * i + "- \n" for i in range(70)), "max_depth", "nodes" + "[0]" * 64),
])
def test_every_event_source_refuses_alike(events, text, limit, path):
    # libyaml when PyYAML has it, else PyYAML's own parser: the same limits, the same paths
    loader = bounded_yaml_loader(DEFAULT_LIMITS, events=events)
    with pytest.raises(DocumentLimitError) as refused:
        yaml.load(text, Loader=loader)
    assert (refused.value.limit, refused.value.path) == (limit, path)


@pytest.mark.parametrize("events", sorted(EVENT_SOURCES))
def test_every_event_source_loads_what_safe_load_loads(events):
    text = "a: &x {b: [1, 2.5, true, null, 'q']}\nc: *x\nd: {<<: *x, e: 2024-01-01}\n"
    assert yaml.load(text, Loader=bounded_yaml_loader(events=events, dates_as_text=False)) == yaml.safe_load(text)
