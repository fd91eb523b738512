"""The pinned graph dict read once into typed, frozen values."""
from __future__ import annotations

import dataclasses

import pytest

from pipelines.engine import Edge, ExecutionGraph
from tests.pipelines.engine.graphs import graph, job


def test_jobs_edges_and_retry_are_typed_and_indexed():
    g = graph([job("check", "condition"), job("yes", retry={"max_attempts": 3, "backoff": "fixed"}),
               job("no")], [("check", "yes", "true"), ("check", "no", "false")])

    assert [j.id for j in g.jobs] == ["check", "yes", "no"]
    assert g.job("yes").retry.max_attempts == 3 and g.job("yes").retry.backoff == "fixed"
    assert g.incoming["yes"] == (Edge("check", "yes", "true"),)
    assert g.predecessors("no") == {"check"} and g.predecessors("check") == set()


def test_the_stored_dict_is_kept_as_the_jobs_spec():
    raw = job("a", "http", config={"url": "http://127.0.0.1/"}, timeout_s=5)
    g = ExecutionGraph.from_dict({"jobs": [raw], "edges": [], "params": {"n": 1}})

    assert g.job("a").spec is raw and g.job("a").timeout_s == 5 and g.params == {"n": 1}


def test_the_graph_is_frozen():
    g = graph([job("a")])
    with pytest.raises(dataclasses.FrozenInstanceError):
        g.jobs = ()
    with pytest.raises(TypeError):
        g.by_id["b"] = g.job("a")


def test_an_unknown_job_names_the_known_ones():
    with pytest.raises(KeyError, match=r"no job 'z'.*\['a'\]"):
        graph([job("a")]).job("z")
