"""Deployments end to end: apply loads artifacts into real workers; each drift kind is detected from
their heartbeats and `flowplane_status` replies, and reconcile converges it.

Workers heartbeat every 0.5 s; every wait is bounded; workers are stopped by pid.
"""
from __future__ import annotations

import pytest

from controlplane.deployments.models import Deployment, DeploymentEvent, artifact_key
from controlplane.fleet.models import Worker
from controlplane.fleet.services import worker_group_create
from controlplane.workflows.models import Workflow
from tests.controlplane.deployments.conftest import Flow, publish
from tests.e2e.harness import wait_until
from controlplane.deployments import broadcast as deploy

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

FAST = {"WORKER_HEARTBEAT_INTERVAL_S": "0.5"}
GRAPH = {
    "nodes": [
        {"id": "start", "type": "noop", "group": "batch"},
        {"id": "say", "type": "log", "group": "ingest", "replicas": 3, "config": {"message": "hi"}},
    ],
    "edges": [{"from": "start", "to": "say", "delivery": "landing"}],
}


@pytest.fixture(autouse=True)
def _settings(settings, tmp_path):
    settings.DEPLOY_CONTROL_TIMEOUT_S = 5.0
    settings.LANDING_STORE_URL = f"file://{tmp_path}/landing"


@pytest.fixture
def groups(company):
    return {slug: worker_group_create(company=company, slug=slug) for slug in ("ingest", "batch")}


@pytest.fixture
def control():
    from workers.celery import app

    return app.control


def live(hostname: str, **conditions):
    worker = Worker.objects.live().filter(hostname=hostname).first()
    if worker is None or not worker.step_types:
        return None
    return worker if all(getattr(worker, k) == v for k, v in conditions.items()) else None


def holds(hostname: str, expected: dict[str, str]) -> bool:
    worker = Worker.objects.filter(hostname=hostname).first()
    loaded = worker.loaded_artifacts if worker else {}
    return all(loaded.get(k) == v for k, v in expected.items())


def desired(deployment: Deployment, group: str) -> dict[str, str]:
    return {artifact_key(deployment.pk, jd.job_id): jd.digest for jd in deployment.jobs.filter(group__slug=group)}


def reconcile(client, deployment, *, dry_run: bool) -> dict:
    response = client.post(f"/api/v1/deployments/{deployment.pk}/reconcile", {"dry_run": dry_run}, format="json")
    assert response.status_code == 200, response.json()
    return response.json()


def drift_kinds(report) -> set[tuple[str, str]]:
    return {(d["kind"], d.get("worker") or d.get("group")) for d in report["drift"]}


@pytest.fixture
def deployed(start_worker, groups, project, owner, client_for):
    procs = {}
    for queue, hostname in [(groups["ingest"].queue_name, "ingest1@e2e"), (groups["ingest"].queue_name, "ingest2@e2e"),
                            (groups["batch"].queue_name, "batch1@e2e")]:
        procs[hostname] = start_worker([queue], hostname, extra_env=FAST, wait=False)
    for hostname in procs:
        wait_until(lambda: live(hostname, active_consumers=[groups["ingest" if "ingest" in hostname else "batch"]
                                                            .queue_name]),
                   timeout=60, what=f"{hostname} to heartbeat")
    workflow = Workflow.objects.create(project=project, slug="etl", name="ETL", created_by=owner)
    publish(workflow, GRAPH, user=owner)
    client = client_for(owner)
    body = Flow(client, workflow).deploy(1)
    deployment = Deployment.objects.get(pk=body["id"])
    for hostname, group in [("ingest1@e2e", "ingest"), ("ingest2@e2e", "ingest"), ("batch1@e2e", "batch")]:
        wait_until(lambda: holds(hostname, desired(deployment, group)), timeout=20,
                   what=f"{hostname} to report its artifacts")
    # `say` runs 3 shards at once and ingest has 2 slots (two workers of 1): apply grew a pool.
    wait_until(lambda: live("ingest1@e2e", concurrency=2), timeout=20, what="apply to grow ingest1's pool")
    return client, deployment, procs


def test_apply_loads_each_group_its_artifacts_and_records_acks(deployed):
    client, deployment, procs = deployed
    ingest = Worker.objects.get(hostname="ingest1@e2e").loaded_artifacts
    assert set(ingest) == set(desired(deployment, "ingest"))  # only its group's artifacts
    assert any(k.endswith("start->say/landing-read") for k in ingest)
    acked = DeploymentEvent.objects.filter(deployment=deployment, kind="job_deployed")
    by_job = {e.data["job_id"]: e.data["workers"] for e in acked}
    assert by_job["say"] == ["ingest1@e2e", "ingest2@e2e"] and by_job["start"] == ["batch1@e2e"]
    assert set(deployment.jobs.values_list("status", flat=True)) == {"deployed"}
    assert reconcile(client, deployment, dry_run=True)["drift"] == []


def test_missing_and_stale_artifacts_are_reloaded(deployed):
    client, deployment, procs = deployed
    say = artifact_key(deployment.pk, "say")
    read = artifact_key(deployment.pk, "start->say/landing-read")
    deploy.unload_artifacts(["ingest1@e2e"], [say])
    deploy.load_artifacts("ingest2@e2e", [{"job_id": read, "digest": "sha256:stale", "spec": {}}], replace=False)

    report = reconcile(client, deployment, dry_run=True)
    assert drift_kinds(report) == {("artifact_missing", "ingest1@e2e"), ("artifact_stale", "ingest2@e2e")}
    assert DeploymentEvent.objects.filter(kind="drift_detected").count() == 2

    report = reconcile(client, deployment, dry_run=False)
    for hostname in ("ingest1@e2e", "ingest2@e2e"):
        wait_until(lambda: holds(hostname, desired(deployment, "ingest")), timeout=20, what=f"{hostname} reloaded")
    event = DeploymentEvent.objects.get(kind="reconciled")
    assert sorted(event.data["fixed"]) == sorted(d["id"] for d in report["drift"]) and not event.data["unresolved"]
    assert reconcile(client, deployment, dry_run=True)["drift"] == []


def test_hand_edited_artifact_is_restored(deployed):
    client, deployment, procs = deployed
    jd = deployment.jobs.get(job_id="say")
    original = jd.spec
    jd.spec = {**jd.spec, "config": {"message": "edited in the admin"}}
    jd.save()
    report = reconcile(client, deployment, dry_run=True)
    assert drift_kinds(report) == {("spec_edited", "ingest")}
    reconcile(client, deployment, dry_run=False)
    jd.refresh_from_db()
    assert jd.spec == original
    assert reconcile(client, deployment, dry_run=True)["drift"] == []


def test_cancelled_consumer_is_added_back(deployed, control, groups):
    client, deployment, procs = deployed
    queue = groups["ingest"].queue_name
    control.cancel_consumer(queue, destination=["ingest2@e2e"], reply=True, timeout=5)
    wait_until(lambda: live("ingest2@e2e", active_consumers=[]), timeout=20, what="the cancelled consumer in a beat")

    report = reconcile(client, deployment, dry_run=True)
    assert ("consumer_cancelled", "ingest2@e2e") in drift_kinds(report)
    assert ("capacity_short", "ingest") in drift_kinds(report)  # one of two slots stopped serving

    reconcile(client, deployment, dry_run=False)
    wait_until(lambda: live("ingest2@e2e", active_consumers=[queue]), timeout=20, what="the consumer to come back")
    assert reconcile(client, deployment, dry_run=True)["drift"] == []


def test_stopped_worker_leaves_fewer_slots_and_reconcile_grows_the_pool(deployed):
    client, deployment, procs = deployed
    # Stop ingest2 cleanly: it marks itself stopped, so the group has 2 live slots for 3 replicas.
    procs["ingest2@e2e"].stop()
    wait_until(lambda: not Worker.objects.live().filter(hostname="ingest2@e2e").exists(), timeout=20,
               what="ingest2 to leave the live fleet")

    report = reconcile(client, deployment, dry_run=True)
    (short,) = [d for d in report["drift"] if d["kind"] == "capacity_short"]
    assert (short["group"], short["needed"], short["live_slots"]) == ("ingest", 3, 2)

    reconcile(client, deployment, dry_run=False)
    wait_until(lambda: live("ingest1@e2e", concurrency=3), timeout=20, what="ingest1's pool to grow to 3")
    assert reconcile(client, deployment, dry_run=True)["drift"] == []


def test_pause_unloads_resume_reloads_undeploy_unloads(deployed):
    client, deployment, procs = deployed
    keys = desired(deployment, "ingest")

    def held(hostname):
        return set(Worker.objects.get(hostname=hostname).loaded_artifacts)

    assert client.post(f"/api/v1/deployments/{deployment.pk}/pause").status_code == 200
    wait_until(lambda: not held("ingest1@e2e") and not held("batch1@e2e"), timeout=20, what="artifacts unloaded")
    assert client.post(f"/api/v1/deployments/{deployment.pk}/resume").status_code == 200
    wait_until(lambda: holds("ingest1@e2e", keys), timeout=20, what="artifacts reloaded on resume")
    assert client.post(f"/api/v1/deployments/{deployment.pk}/undeploy").status_code == 200
    wait_until(lambda: not held("ingest1@e2e") and not held("ingest2@e2e"), timeout=20, what="artifacts unloaded")
    kinds = list(DeploymentEvent.objects.filter(deployment=deployment).values_list("kind", flat=True))
    assert kinds[-1] == "undeployed" and "paused" in kinds and "resumed" in kinds
