"""Executions API: trigger, tenancy (404 for other tenants), roles, filters, timeline and events."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from controlplane.executions.models import Execution, ExecutionStatus
from controlplane.executions.services import Delivery, execution_start, step_execute
from controlplane.tenancy.models import Role
from tests.controlplane.executions.builders import edges, job, make_version
from tests.factories import add_member

pytestmark = pytest.mark.django_db

URL = "/api/v1/executions"


@pytest.fixture
def version(groups, project, owner):
    return make_version(project, [
        job("a", "python", config={"callable": "echo", "kwargs": {"v": "{{ .trigger.v }}"}}),
        job("b", "fail", group="load", config={"fail_attempts": 1}, retry={"max_attempts": 2, "jitter": False},
            compensate={"type": "noop"}),
    ], edges(("a", "b")), user=owner)


def test_post_starts_an_execution_and_an_idempotent_repeat_returns_it(client_for, owner, version,
                                                                      django_capture_on_commit_callbacks):
    body = {"version": version.pk, "input": {"v": 1}, "idempotency_key": "abc"}
    with django_capture_on_commit_callbacks() as callbacks:
        first = client_for(owner).post(URL, body, format="json")
        again = client_for(owner).post(URL, body, format="json")

    assert (first.status_code, again.status_code) == (201, 200), first.json()
    assert first.json()["id"] == again.json()["id"] and first.json()["status"] == "running"
    assert len(callbacks) == 1
    conflict = client_for(owner).post(URL, {**body, "input": {"v": 2}}, format="json")
    assert (conflict.status_code, conflict.json()["error"]) == (409, "idempotency_conflict")


@pytest.mark.parametrize(
    "body, status, code, path",
    [
        ({"version": 999999, "input": {}}, 404, "not_found", "version"),
        ({"input": {}}, 400, "invalid", "version"),
        ("list", 400, "invalid", "input"),
    ],
    ids=["unknown-version", "missing-version", "input-not-object"],
)
def test_bad_requests_are_4xx_and_dispatch_nothing(client_for, owner, version, body, status, code, path,
                                                   django_capture_on_commit_callbacks):
    if body == "list":
        body = {"version": version.pk, "input": [1]}
    with django_capture_on_commit_callbacks() as callbacks:
        response = client_for(owner).post(URL, body, format="json")
    assert (response.status_code, response.json()["error"], response.json()["path"]) == (status, code, path)
    assert not callbacks and not Execution.objects.exists()


def test_viewers_read_but_cannot_trigger(client_for, company, owner, version):
    viewer = add_member(company, role=Role.VIEWER)
    execution, _ = execution_start(version=version, input={}, user=owner)

    assert client_for(viewer).get(f"{URL}/{execution.pk}").status_code == 200
    response = client_for(viewer).post(URL, {"version": version.pk, "input": {}}, format="json")
    assert response.status_code == 403
    assert client_for(viewer).post(f"{URL}/{execution.pk}/cancel").status_code == 403


@pytest.mark.parametrize("suffix", ["", "/timeline", "/events"])
def test_another_tenants_execution_is_not_found(client_for, owner, outsider, version, suffix):
    execution, _ = execution_start(version=version, input={}, user=owner)

    response = client_for(outsider).get(f"{URL}/{execution.pk}{suffix}")

    assert (response.status_code, response.json()["error"]) == (404, "not_found")
    assert client_for(outsider).post(f"{URL}/{execution.pk}/cancel").status_code == 404
    assert client_for(outsider).post(URL, {"version": version.pk, "input": {}}, format="json").status_code == 404
    assert client_for(owner).get(f"{URL}/not-a-uuid").status_code == 404


def test_list_is_scoped_and_filtered(client_for, owner, outsider, version, project):
    other_version = make_version(project, [job("x")], user=owner)
    first, _ = execution_start(version=version, input={}, user=owner)
    second, _ = execution_start(version=other_version, input={}, user=owner)
    Execution.objects.filter(pk=first.pk).update(status=ExecutionStatus.SUCCEEDED,
                                                  created_at=timezone.now() - timedelta(hours=2))
    client = client_for(owner)

    def ids(query=""):
        response = client.get(f"{URL}{query}")
        assert response.status_code == 200, response.json()
        return [row["id"] for row in response.json()["results"]]

    assert ids() == [str(second.pk), str(first.pk)]
    assert ids("?status=succeeded") == [str(first.pk)]
    assert ids(f"?workflow={other_version.workflow_id}") == [str(second.pk)]
    assert ids(f"?version={version.pk}") == [str(first.pk)]
    since = (timezone.now() - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    assert ids(f"?created_after={since}") == [str(second.pk)]
    assert ids(f"?created_before={since}") == [str(first.pk)]
    assert client_for(outsider).get(URL).json()["results"] == []
    assert client.get(f"{URL}?status=bogus").status_code == 400


def test_timeline_and_events(client_for, owner, version):
    execution, _ = execution_start(version=version, input={"v": 7}, user=owner)
    delivery = Delivery(task_id="t", worker="ingest1@unit", queue="wg.acme.ingest")
    step_execute(execution_id=execution.pk, node_id="a", shard=0, shard_count=1, delivery=delivery)
    step_execute(execution_id=execution.pk, node_id="b", shard=0, shard_count=1, delivery=delivery)  # fails once
    step_execute(execution_id=execution.pk, node_id="b", shard=0, shard_count=1, delivery=delivery)

    timeline = client_for(owner).get(f"{URL}/{execution.pk}/timeline").json()

    assert [(s["node_id"], s["status"], s["attempts"]) for s in timeline["steps"]] == [
        ("a", "succeeded", 1), ("b", "succeeded", 2)]
    a = timeline["steps"][0]
    assert a["input"] == {"callable": "echo", "kwargs": {"v": 7}} and a["output"] == {"v": 7}
    assert a["worker"] == "ingest1@unit" and a["group"] == "ingest" and a["duration_ms"] >= 0
    assert set(a) >= {"started_at", "finished_at", "error", "shard", "attempt_history"}
    assert [h["status"] for h in timeline["steps"][1]["attempt_history"]] == ["failed", "succeeded"]
    assert timeline["compensations"] == [] and "duration_ms" in timeline

    events = client_for(owner).get(f"{URL}/{execution.pk}/events").json()
    seqs = [e["seq"] for e in events["results"]]
    assert seqs == list(range(1, len(seqs) + 1)) and events["last_seq"] == seqs[-1]
    later = client_for(owner).get(f"{URL}/{execution.pk}/events?after=3").json()
    assert [e["seq"] for e in later["results"]] == seqs[3:]


def test_cancel_stops_a_running_execution(client_for, owner, version):
    execution, _ = execution_start(version=version, input={}, user=owner)

    response = client_for(owner).post(f"{URL}/{execution.pk}/cancel")

    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert client_for(owner).post(f"{URL}/{execution.pk}/cancel").status_code == 409
    outcome = step_execute(execution_id=execution.pk, node_id="a", shard=0, shard_count=1, delivery=Delivery())
    assert outcome.action == "ignore"


def test_migrations_are_complete():
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("makemigrations", "executions", "--check", "--dry-run", stdout=out)
