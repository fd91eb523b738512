"""How a step's on-demand artifact load reaches the heartbeat (`workers/bootsteps.py`); no broker.

In the worker's main process (solo and thread pools) the load is held at once; a prefork child asks
its main process with `flowplane_artifact_loaded`; outside a worker nothing is held or sent.
"""
from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from controlplane.deployments.artifact_cache import artifact_loaded, cache
from pipelines.planner import spec_digest
from workers import bootsteps

SPEC = {"type": "log", "config": {"message": "hi"}}
DIGEST = spec_digest(SPEC)


@pytest.fixture(autouse=True)
def _clean(monkeypatch):
    cache.clear()
    sent = []
    monkeypatch.setattr(bootsteps.broadcast, "artifact_loaded", lambda hostname, artifact: sent.append((hostname, artifact)))
    yield sent
    cache.clear()


def loaded_on_demand():
    artifact_loaded.send(sender=None, key="7:a", digest=DIGEST, spec=SPEC, worker="w1@test")


def test_in_the_main_process_the_load_is_held_at_once(monkeypatch, _clean):
    monkeypatch.setattr(bootsteps, "_main_pid", os.getpid())
    loaded_on_demand()
    assert cache.loaded() == {"7:a": DIGEST} and _clean == []


def test_a_pool_child_tells_its_main_process(monkeypatch, _clean):
    monkeypatch.setattr(bootsteps, "_main_pid", os.getpid() + 1)
    loaded_on_demand()
    assert cache.loaded() == {} and _clean == [("w1@test", {"job_id": "7:a", "digest": DIGEST, "spec": SPEC})]


def test_outside_a_worker_nothing_is_held_or_sent(monkeypatch, _clean):
    monkeypatch.setattr(bootsteps, "_main_pid", None)
    loaded_on_demand()
    assert cache.loaded() == {} and _clean == []


def test_the_main_process_command_holds_a_checked_artifact_only():
    state = SimpleNamespace(consumer=SimpleNamespace(hostname="w1@test"))
    reply = bootsteps.flowplane_artifact_loaded(state, artifact={"job_id": "7:a", "digest": DIGEST, "spec": SPEC})
    assert reply["ok"] and reply["held"] and reply["artifacts"] == {"7:a": DIGEST}

    bad = bootsteps.flowplane_artifact_loaded(state, artifact={"job_id": "7:b", "digest": DIGEST, "spec": {}})
    assert bad["ok"] is False and cache.loaded() == {"7:a": DIGEST}
