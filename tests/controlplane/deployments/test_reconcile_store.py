"""Reconcile and the artifact store: a job whose stored artifact is gone or altered is drift that
matters (its steps would fail), reported beside the other kinds; a missing row is stored again."""
from __future__ import annotations

import pytest

from controlplane.deployments.models import Artifact, Deployment, artifact_key
from controlplane.deployments.services import deployment_reconcile
from pipelines.planner import spec_digest
from tests.controlplane.deployments.conftest import heartbeat, publish, two_step_graph
from tests.controlplane.executions.test_pinned_artifacts import tamper

pytestmark = pytest.mark.django_db


@pytest.fixture
def deployment(flow, workflow, owner, groups):
    publish(workflow, two_step_graph(), user=owner)
    deployment = Deployment.objects.get(pk=flow.deploy(1)["id"])
    loaded = {artifact_key(deployment.pk, jd.job_id): jd.digest for jd in deployment.jobs.all()}
    heartbeat("w-ingest@test", [groups["ingest"].queue_name], loaded_artifacts=loaded)
    return deployment


def drift_of(deployment, **kwargs):
    return deployment_reconcile(deployment=deployment, probe=False, **kwargs)


def test_a_deleted_store_row_is_store_missing_and_reconcile_stores_it_again(deployment):
    jd = deployment.jobs.get(job_id="say")
    tamper(jd.digest, None)

    report = drift_of(deployment, dry_run=False)

    assert [(d["kind"], d["job_id"]) for d in report["drift"]] == [("store_missing", "say")]
    assert report["actions"] == [{"drift": report["drift"][0]["id"], "action": "store_artifact", "ok": True}]
    assert Artifact.objects.get(digest=jd.digest).spec == jd.spec
    assert drift_of(deployment, dry_run=True)["drift"] == []


def test_an_altered_store_row_is_store_mismatch_and_stays_unresolved(deployment):
    jd = deployment.jobs.get(job_id="say")
    altered = {**jd.spec, "config": {"message": "injected"}}
    tamper(jd.digest, altered)

    report = drift_of(deployment, dry_run=False)

    [item] = report["drift"]
    assert (item["kind"], item["expected"], item["actual"]) == ("store_mismatch", jd.digest, spec_digest(altered))
    assert report["actions"][0]["ok"] is False and "write-once" in report["actions"][0]["detail"]
    assert Artifact.objects.get(digest=jd.digest).spec == altered  # not rewritten behind anyone's back
