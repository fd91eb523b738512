"""Bad requests against the real broker: a clear 4xx and not one message published."""
from __future__ import annotations

import pytest

from controlplane.deployments.services import deployment_pause
from controlplane.executions.models import Execution
from controlplane.fleet.models import Worker
from tests.controlplane.executions.builders import job, make_deployment, make_group, make_live_worker
from tests.e2e.harness import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

URL = "/api/v1/executions"


@pytest.mark.parametrize(
    "case, status, code, path",
    [
        ("unknown-deployment", 404, "not_found", "deployment"),
        ("bare-version", 400, "invalid", "version"),
        ("input-not-object", 400, "invalid", "input"),
        ("no-live-worker", 409, "no_live_worker", "jobs.a.group"),
        ("paused", 409, "deployment_paused", "deployment"),
    ],
)
def test_bad_input_is_a_4xx_and_nothing_reaches_the_broker(redis_test_db, client_for, company, project, owner,
                                                          settings, tmp_path, case, status, code, path):
    settings.DEPLOY_CONTROL_TIMEOUT_S = 0.05  # worker rows only: rollout broadcasts get no reply
    settings.LANDING_STORE_URL = f"file://{tmp_path}/landing"
    ingest = make_group(company, "ingest")
    make_live_worker("ingest1@nowhere", ingest)  # a row only: nothing consumes, so messages would stay queued
    deployment = make_deployment(project, [job("a")], user=owner)
    if case == "no-live-worker":
        Worker.objects.filter(hostname="ingest1@nowhere").update(last_heartbeat="2000-01-01T00:00:00Z")
    if case == "paused":
        deployment_pause(deployment=deployment, user=owner)
    body = {
        "unknown-deployment": {"deployment": 999999, "input": {}},
        "bare-version": {"version": deployment.version_id, "input": {}},
        "input-not-object": {"deployment": deployment.pk, "input": [1]},
    }.get(case, {"deployment": deployment.pk, "input": {}})
    redis_test_db.flushdb()

    response = client_for(owner).post(URL, body, format="json")

    assert (response.status_code, response.json()["error"], response.json()["path"]) == (status, code, path)
    assert not Execution.objects.exists()
    assert redis_test_db.llen(ingest.queue_name) == 0
    if case == "unknown-deployment":  # control: a good request does publish
        ok = client_for(owner).post(URL, {"deployment": deployment.pk, "input": {}}, format="json")
        assert ok.status_code == 201
        wait_until(lambda: redis_test_db.llen(ingest.queue_name) == 1, timeout=5, what="the first step's message")
