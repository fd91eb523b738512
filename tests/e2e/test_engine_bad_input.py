"""Bad requests against the real broker: a clear 4xx and not one message published."""
from __future__ import annotations

import pytest

from controlplane.executions.models import Execution
from tests.controlplane.executions.builders import job, make_group, make_live_worker, make_version
from tests.e2e.harness import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

URL = "/api/v1/executions"


@pytest.mark.parametrize(
    "case, status, code, path",
    [
        ("unknown-version", 404, "not_found", "version"),
        ("input-not-object", 400, "invalid", "input"),
        ("unknown-group", 400, "unknown_group", "jobs.a.group"),
        ("no-live-worker", 409, "no_live_worker", "jobs.a.group"),
    ],
)
def test_bad_input_is_a_4xx_and_nothing_reaches_the_broker(redis_test_db, client_for, company, project, owner,
                                                          case, status, code, path):
    ingest = make_group(company, "ingest")
    make_group(company, "idle")
    make_live_worker("ingest1@nowhere", ingest)  # a row only: nothing consumes, so messages would stay queued
    group = {"unknown-group": "nowhere", "no-live-worker": "idle"}.get(case, "ingest")
    version = make_version(project, [job("a", group=group)], user=owner)
    body = {"version": 999999 if case == "unknown-version" else version.pk,
            "input": [1] if case == "input-not-object" else {}}
    redis_test_db.flushdb()

    response = client_for(owner).post(URL, body, format="json")

    assert (response.status_code, response.json()["error"], response.json()["path"]) == (status, code, path)
    assert not Execution.objects.exists()
    assert redis_test_db.llen(ingest.queue_name) == 0 and redis_test_db.llen("wg.acme.idle") == 0
    if case == "unknown-version":  # control: a good request does publish
        ok = client_for(owner).post(URL, {"version": version.pk, "input": {}}, format="json")
        assert ok.status_code == 201
        wait_until(lambda: redis_test_db.llen(ingest.queue_name) == 1, timeout=5, what="the first step's message")
