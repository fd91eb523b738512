"""The process's artifact cache (`controlplane.deployments.artifact_cache`); no database, no broker.

Only specs that hash to their digest are ever runnable; the bound drops least recently used specs
but never one a held key names; an on-demand load never overwrites what a key holds.
"""
from __future__ import annotations

import pytest

from controlplane.deployments.artifact_cache import ArtifactCache, ArtifactError
from pipelines.planner import spec_digest


def artifact(key: str, message: str) -> dict:
    spec = {"type": "log", "config": {"message": message}}
    return {"job_id": key, "digest": spec_digest(spec), "spec": spec}


def test_a_loaded_spec_is_runnable_by_its_digest_and_held_under_its_key():
    cache = ArtifactCache()
    a = artifact("1:a", "hello")

    assert cache.load([a]) == {"1:a": a["digest"]}

    assert cache.spec(a["digest"]) == a["spec"]
    assert cache.loaded() == {"1:a": a["digest"]}


def test_a_spec_that_does_not_hash_to_its_digest_is_held_as_reported_but_never_run():
    cache = ArtifactCache()
    claimed = artifact("1:a", "hello")["digest"]

    cache.load([{"job_id": "1:a", "digest": claimed, "spec": {"type": "log", "config": {"message": "tampered"}}}])

    assert cache.loaded() == {"1:a": claimed}
    assert cache.spec(claimed) is None


def test_the_bound_evicts_the_least_recently_used_spec_no_key_holds():
    cache = ArtifactCache(size=2)
    held = artifact("1:held", "held")
    cache.load([held])
    old, recent, newest = (artifact("x", m) for m in ("old", "recent", "newest"))
    cache.remember(old["digest"], old["spec"])
    cache.remember(recent["digest"], recent["spec"])
    cache.spec(old["digest"])  # used again: now the most recent of the two

    cache.remember(newest["digest"], newest["spec"])

    assert len(cache) == 2
    assert cache.spec(held["digest"]) == held["spec"]  # a held key's spec is never evicted
    assert cache.spec(newest["digest"]) == newest["spec"]
    assert cache.spec(recent["digest"]) is None and cache.spec(old["digest"]) is None


def test_unloading_a_key_keeps_its_spec_runnable_until_evicted():
    # a run pinned to the digest may still be in flight when the deployment moves on
    cache = ArtifactCache()
    a = artifact("1:a", "hello")
    cache.load([a])

    assert cache.unload(["1:a"]) == ["1:a"]

    assert cache.loaded() == {} and cache.spec(a["digest"]) == a["spec"]


def test_an_on_demand_load_holds_a_missing_key_but_never_replaces_a_held_digest():
    cache = ArtifactCache()
    current, older, other = artifact("1:a", "v2"), artifact("1:a", "v1"), artifact("1:b", "b")
    cache.load([current])

    assert cache.hold_if_missing(older["job_id"], older["digest"], older["spec"]) is False
    assert cache.hold_if_missing(other["job_id"], other["digest"], other["spec"]) is True

    assert cache.loaded() == {"1:a": current["digest"], "1:b": other["digest"]}
    assert cache.spec(older["digest"]) == older["spec"]  # still runnable for the run pinned to it


def test_an_on_demand_load_whose_spec_does_not_match_is_refused():
    cache = ArtifactCache()
    digest = artifact("1:a", "hello")["digest"]

    with pytest.raises(ArtifactError, match="does not hash"):
        cache.hold_if_missing("1:a", digest, {"type": "log", "config": {"message": "tampered"}})
    assert cache.loaded() == {} and cache.spec(digest) is None


def test_replace_drops_other_keys():
    cache = ArtifactCache()
    cache.load([artifact("1:a", "a"), artifact("1:b", "b")])
    c = artifact("1:c", "c")

    cache.load([c], replace=True)

    assert cache.loaded() == {"1:c": c["digest"]}
