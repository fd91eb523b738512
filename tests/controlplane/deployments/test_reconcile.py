"""Reconcile against heartbeat rows: each drift kind is reported; a hand edit is restored or accepted.

Worker-side convergence (re-broadcast, add_consumer, pool_grow) runs against real workers in
tests/e2e/test_deployments.py.
"""
from __future__ import annotations

import pytest

from controlplane.deployments.models import Deployment, DeploymentEvent, JobDeployment, artifact_key
from controlplane.deployments.services import deployment_reconcile, drift_accept, reconcile_all
from controlplane.fleet.models import Worker
from pipelines.planner import spec_digest
from tests.controlplane.deployments.conftest import heartbeat, publish, two_step_graph

pytestmark = pytest.mark.django_db


@pytest.fixture
def deployment(flow, workflow, owner, groups):
    publish(workflow, two_step_graph(), user=owner)
    body = flow.deploy(1)
    deployment = Deployment.objects.get(pk=body["id"])
    # The ingest worker reports what apply sent it, as its heartbeat would after the broadcast.
    loaded = {artifact_key(deployment.pk, jd.job_id): jd.digest for jd in deployment.jobs.all()}
    heartbeat("w-ingest@test", [groups["ingest"].queue_name], loaded_artifacts=loaded)
    return deployment


def kinds(report) -> list[str]:
    return sorted(d["kind"] for d in report["drift"])


def test_no_drift_when_workers_hold_the_artifacts(deployment):
    assert deployment_reconcile(deployment=deployment, dry_run=True, probe=False)["drift"] == []


def test_each_drift_kind_from_heartbeats(deployment, groups):
    queue = groups["ingest"].queue_name
    key = artifact_key(deployment.pk, "say")
    heartbeat("w-ingest@test", [queue], concurrency=1, active_consumers=[],
              loaded_artifacts={key: "sha256:old"})
    jd = deployment.jobs.get(job_id="say")
    jd.spec = {**jd.spec, "config": {"message": "edited by hand"}}
    jd.save()
    report = deployment_reconcile(deployment=deployment, dry_run=True, probe=False)
    assert kinds(report) == ["artifact_missing", "artifact_stale", "capacity_short", "consumer_cancelled",
                             "spec_edited"]
    by_kind = {d["kind"]: d for d in report["drift"]}
    assert by_kind["artifact_stale"]["actual"] == "sha256:old"
    # The widest job (1 replica) needs one slot; the cancelled consumer leaves none.
    assert (by_kind["capacity_short"]["needed"], by_kind["capacity_short"]["live_slots"]) == (1, 0)
    assert by_kind["consumer_cancelled"]["worker"] == "w-ingest@test"
    events = DeploymentEvent.objects.filter(deployment=deployment, kind="drift_detected")
    assert events.count() == 5 and all(e.data["dry_run"] for e in events)


def test_reconcile_restores_a_hand_edited_spec(deployment, django_capture_on_commit_callbacks, owner):
    jd = deployment.jobs.get(job_id="say")
    original = jd.spec
    jd.spec = {**jd.spec, "config": {"message": "edited by hand"}}
    jd.save()
    with django_capture_on_commit_callbacks(execute=True):
        report = deployment_reconcile(deployment=deployment, dry_run=False, user=owner, probe=False)
    assert kinds(report) == ["spec_edited"]
    jd.refresh_from_db()
    assert jd.spec == original and spec_digest(jd.spec) == jd.digest
    reconciled = DeploymentEvent.objects.get(deployment=deployment, kind="reconciled")
    assert reconciled.data["fixed"] == [report["drift"][0]["id"]] and reconciled.actor == owner
    assert deployment_reconcile(deployment=deployment, dry_run=True, probe=False)["drift"] == []


def test_accepting_a_hand_edit_adopts_it(api, deployment):
    jd = deployment.jobs.get(job_id="say")
    jd.spec = {**jd.spec, "config": {"message": "keep me"}}
    jd.save()
    (drift,) = deployment_reconcile(deployment=deployment, dry_run=True, probe=False)["drift"]
    response = api.post(f"/api/v1/deployments/{deployment.pk}/accept-drift", {"drift": drift}, format="json")
    assert response.status_code == 200, response.json()
    jd.refresh_from_db()
    assert jd.digest == spec_digest(jd.spec) and jd.spec["config"]["message"] == "keep me"
    event = DeploymentEvent.objects.get(kind="drift_accepted")
    assert event.data["job_id"] == "say" and event.data["previous_digest"] != event.data["digest"]
    deployment.refresh_from_db()
    assert deployment.revision == 2  # older plans are stale now
    # Accepting again: there is nothing left to accept.
    again = api.post(f"/api/v1/deployments/{deployment.pk}/accept-drift", {"drift": drift["id"]}, format="json")
    assert again.status_code == 409 and again.json()["error"] == "no_such_drift"


def test_reconcile_api_dry_run_and_refusals(api, deployment):
    response = api.post(f"/api/v1/deployments/{deployment.pk}/reconcile", {"dry_run": True}, format="json")
    assert response.status_code == 200 and response.json()["drift"] == []
    api.post(f"/api/v1/deployments/{deployment.pk}/pause")
    response = api.post(f"/api/v1/deployments/{deployment.pk}/reconcile", {"dry_run": True}, format="json")
    assert response.status_code == 409 and response.json()["error"] == "not_active"
    bad = api.post(f"/api/v1/deployments/{deployment.pk}/accept-drift", {"drift": {"kind": "nope"}}, format="json")
    assert bad.status_code == 400 and bad.json()["path"] == "drift.kind"


def test_periodic_reconcile_skips_pinned_deployments(deployment, api):
    jd = deployment.jobs.get(job_id="say")
    jd.spec = {**jd.spec, "config": {"message": "edited"}}
    jd.save()
    Deployment.objects.filter(pk=deployment.pk).update(pinned=True, auto_reconcile=False)
    assert reconcile_all(probe=False)["reconciled"] == 0
    Deployment.objects.filter(pk=deployment.pk).update(pinned=False, auto_reconcile=True)
    assert reconcile_all(probe=False) == {"reconciled": 1, "drift": {deployment.pk: 1}}


def test_workloads_show_loaded_digests(api, deployment):
    rows = {r["job_id"]: r for r in api.get("/api/v1/workloads").json()["results"]}
    (worker,) = rows["say"]["workers"]
    assert worker["hostname"] == "w-ingest@test" and worker["in_sync"] and worker["live"]
    assert worker["loaded_digest"] == rows["say"]["digest"]
    assert Worker.objects.get(hostname="w-ingest@test").loaded_artifacts


def test_capacity_need_is_the_widest_job_not_the_sum(flow, workflow, owner, groups):
    from controlplane.deployments.services.rollout import group_needed_replicas

    graph = {
        "nodes": [
            {"id": "a", "type": "noop", "group": "ingest", "replicas": 3},
            {"id": "b", "type": "noop", "group": "ingest", "replicas": 2},
        ],
        "edges": [{"from": "a", "to": "b"}],
    }
    publish(workflow, graph, user=owner)
    flow.deploy(1)

    # a's three shards run together; b runs after a, so the group never needs 5 slots at once.
    assert group_needed_replicas(groups["ingest"]) == 3


class TestPoolGrowth:
    """How apply spreads a group's missing slots over its workers, within the per-worker cap."""

    def test_the_deficit_goes_to_the_smallest_pools_first(self):
        from controlplane.deployments.services.rollout import pool_growth

        assert pool_growth(3, {"a@h": 1, "b@h": 2}, cap=4) == {"a@h": 2, "b@h": 1}

    def test_no_worker_grows_past_the_cap_and_the_rest_is_left_out(self):
        from controlplane.deployments.services.rollout import pool_growth

        # A -c 1 worker asked for 6 more slots (replicas 7) stops at the cap, not at 7 children.
        assert pool_growth(6, {"a@h": 1}, cap=4) == {"a@h": 3}
        assert pool_growth(2, {"a@h": 4, "b@h": 5}, cap=4) == {}

    def test_nothing_to_add_adds_nothing(self):
        from controlplane.deployments.services.rollout import pool_growth

        assert pool_growth(0, {"a@h": 1}, cap=4) == {} == pool_growth(-2, {"a@h": 1}, cap=4)
