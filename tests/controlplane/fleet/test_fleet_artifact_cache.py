"""The worker's in-process artifact cache (`workers/artifacts.py`); no database, no broker."""
from __future__ import annotations

import pytest

from workers import artifacts


@pytest.fixture(autouse=True)
def empty_cache():
    artifacts.clear()
    yield
    artifacts.clear()


def test_load_reports_digests_and_keeps_specs():
    loaded = artifacts.load_artifacts([
        {"job_id": "a", "digest": "sha256:1", "spec": {"type": "noop"}},
        {"job_id": "b", "spec": {"type": "log"}},
    ])
    assert loaded["a"] == "sha256:1"
    assert loaded["b"] == artifacts.spec_digest({"type": "log"}) and loaded["b"].startswith("sha256:")
    assert artifacts.loaded() == loaded
    assert artifacts.get("a") == {"digest": "sha256:1", "spec": {"type": "noop"}}


def test_reload_replaces_digest_and_replace_drops_others():
    artifacts.load_artifacts([{"job_id": "a", "digest": "1"}, {"job_id": "b", "digest": "1"}])
    artifacts.load_artifacts([{"job_id": "a", "digest": "2"}])
    assert artifacts.loaded() == {"a": "2", "b": "1"}
    artifacts.load_artifacts([{"job_id": "c", "digest": "3"}], replace=True)
    assert artifacts.loaded() == {"c": "3"}


def test_unload_returns_what_was_held():
    artifacts.load_artifacts([{"job_id": "a", "digest": "1"}, {"job_id": "b", "digest": "1"}])
    assert artifacts.unload_artifacts(["a", "missing"]) == ["a"]
    assert artifacts.unload_artifacts(None) == ["b"]
    assert artifacts.loaded() == {}


@pytest.mark.parametrize("bad", [["not-a-dict"], [{"digest": "x"}], [{"job_id": ""}]], ids=["str", "no-id", "empty-id"])
def test_invalid_artifact_loads_nothing(bad):
    # given a cache holding one artifact; when a batch has a valid one then an invalid one
    artifacts.load_artifacts([{"job_id": "keep", "digest": "1"}])
    with pytest.raises(artifacts.ArtifactError, match=r"artifacts\[1\]"):
        artifacts.load_artifacts([{"job_id": "new", "digest": "2"}, *bad])
    # then the batch is refused whole
    assert artifacts.loaded() == {"keep": "1"}


def test_a_worker_digests_a_spec_exactly_as_the_planner_does_non_ascii_included():
    from pipelines.planner import spec_digest

    spec = {"type": "log", "config": {"message": "größe: 3 €, 東京"}}
    loaded = artifacts.load_artifacts([{"job_id": "u", "spec": spec}])
    assert loaded["u"] == spec_digest(spec)
