"""Executions API: trigger a deployment, tenancy (404 for other tenants), roles, filters, timeline,
events, cancel, and dead letters (list, replay)."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from controlplane.deployments.services import deployment_pause, deployment_resume, deployment_undeploy
from controlplane.executions.models import DeadLetter, Execution, ExecutionStatus, Trigger
from controlplane.executions.services import Delivery, execution_start, step_execute
from controlplane.tenancy.models import Role
from tests.controlplane.executions.builders import edges, job, make_deployment
from tests.factories import add_member

pytestmark = pytest.mark.django_db

URL = "/api/v1/executions"


@pytest.fixture
def deployment(groups, project, owner):
    """Given a deployed workflow: a -> b, b fails once then succeeds (compensable)."""
    return make_deployment(project, [
        job("a", "python", config={"callable": "echo", "kwargs": {"v": "{{ .trigger.v }}"}}),
        job("b", "fail", group="load", config={"fail_attempts": 1}, retry={"max_attempts": 2, "jitter": False},
            compensate={"type": "noop"}),
    ], edges(("a", "b")), user=owner)


def test_post_starts_an_execution_and_an_idempotent_repeat_returns_it(client_for, owner, deployment,
                                                                      django_capture_on_commit_callbacks):
    body = {"deployment": deployment.pk, "input": {"v": 1}, "idempotency_key": "abc"}
    with django_capture_on_commit_callbacks() as callbacks:
        first = client_for(owner).post(URL, body, format="json")
        again = client_for(owner).post(URL, body, format="json")

    assert (first.status_code, again.status_code) == (201, 200), first.json()
    assert first.json()["id"] == again.json()["id"] and first.json()["status"] == "running"
    assert len(callbacks) == 1
    conflict = client_for(owner).post(URL, {**body, "input": {"v": 2}}, format="json")
    assert (conflict.status_code, conflict.json()["error"]) == (409, "idempotency_conflict")


def test_the_response_shows_deployment_environment_and_version(client_for, owner, deployment):
    body = client_for(owner).post(URL, {"deployment": deployment.pk}, format="json").json()

    assert (body["deployment"], body["environment"], body["version"], body["version_number"]) == (
        deployment.pk, "prod", deployment.version_id, 1)
    assert body["workflow"] == deployment.workflow_id and body["input"] == {}
    assert [j["id"] for j in body["graph"]["jobs"]] == ["a", "b"]


@pytest.mark.parametrize("environment", [None, "prod"], ids=["default-environment", "named-environment"])
def test_post_by_workflow_runs_its_deployment_in_the_environment(client_for, owner, deployment, environment):
    body = {"workflow": deployment.workflow_id, "input": {"v": 2}}
    if environment:
        body["environment"] = environment

    response = client_for(owner).post(URL, body, format="json")

    assert response.status_code == 201, response.json()
    assert (response.json()["deployment"], response.json()["environment"]) == (deployment.pk, "prod")


@pytest.mark.parametrize(
    "body, status, code, path",
    [
        ({"deployment": 999999, "input": {}}, 404, "not_found", "deployment"),
        ({"workflow": 999999, "input": {}}, 404, "not_found", "workflow"),
        ({"input": {}}, 400, "invalid", "deployment"),
        ("version", 400, "invalid", "version"),
        ("both", 400, "invalid", "deployment"),
        ("list", 400, "invalid", "input"),
        ("staging", 409, "not_deployed", "environment"),
    ],
    ids=["unknown-deployment", "unknown-workflow", "nothing-to-run", "bare-version", "deployment-and-workflow",
         "input-not-object", "environment-not-deployed"],
)
def test_bad_requests_are_4xx_and_dispatch_nothing(client_for, owner, deployment, body, status, code, path,
                                                   django_capture_on_commit_callbacks):
    if isinstance(body, str):  # cases that need the deployment's ids
        body = {
            "version": {"version": deployment.version_id, "input": {}},
            "both": {"deployment": deployment.pk, "workflow": deployment.workflow_id},
            "list": {"deployment": deployment.pk, "input": [1]},
            "staging": {"workflow": deployment.workflow_id, "environment": "staging"},
        }[body]
    with django_capture_on_commit_callbacks() as callbacks:
        response = client_for(owner).post(URL, body, format="json")
    assert (response.status_code, response.json()["error"], response.json()["path"]) == (status, code, path)
    assert not callbacks and not Execution.objects.exists()


def test_a_bare_version_is_refused_with_the_way_to_deploy_it(client_for, owner, deployment):
    response = client_for(owner).post(URL, {"version": deployment.version_id}, format="json")

    assert response.status_code == 400
    assert "POST /api/v1/plans" in response.json()["detail"] and "/apply" in response.json()["detail"]


@pytest.mark.parametrize(
    "lifecycle, by, code",
    [
        ("pause", "deployment", "deployment_paused"),
        ("pause", "workflow", "deployment_paused"),
        ("undeploy", "deployment", "deployment_undeployed"),
        ("undeploy", "workflow", "not_deployed"),
    ],
)
def test_a_paused_or_undeployed_deployment_refuses_with_409_until_resumed(
    client_for, owner, deployment, lifecycle, by, code, django_capture_on_commit_callbacks
):
    {"pause": deployment_pause, "undeploy": deployment_undeploy}[lifecycle](deployment=deployment, user=owner)
    body = {"deployment": deployment.pk} if by == "deployment" else {"workflow": deployment.workflow_id}

    with django_capture_on_commit_callbacks() as callbacks:
        response = client_for(owner).post(URL, body, format="json")

    assert (response.status_code, response.json()["error"]) == (409, code)
    assert not callbacks and not Execution.objects.exists()
    if lifecycle == "pause":
        deployment_resume(deployment=deployment, user=owner)
        assert client_for(owner).post(URL, body, format="json").status_code == 201


def test_viewers_read_but_cannot_trigger(client_for, company, owner, deployment):
    viewer = add_member(company, role=Role.VIEWER)
    execution, _ = execution_start(deployment=deployment, input={}, user=owner)

    assert client_for(viewer).get(f"{URL}/{execution.pk}").status_code == 200
    for body in ({"deployment": deployment.pk}, {"workflow": deployment.workflow_id}):
        assert client_for(viewer).post(URL, body, format="json").status_code == 403
    assert client_for(viewer).post(f"{URL}/{execution.pk}/cancel").status_code == 403


@pytest.mark.parametrize("suffix", ["", "/timeline", "/events"])
def test_another_tenants_execution_is_not_found(client_for, owner, outsider, deployment, suffix):
    execution, _ = execution_start(deployment=deployment, input={}, user=owner)

    response = client_for(outsider).get(f"{URL}/{execution.pk}{suffix}")

    assert (response.status_code, response.json()["error"]) == (404, "not_found")
    assert client_for(outsider).post(f"{URL}/{execution.pk}/cancel").status_code == 404
    assert client_for(outsider).post(URL, {"deployment": deployment.pk}, format="json").status_code == 404
    assert client_for(outsider).post(URL, {"workflow": deployment.workflow_id}, format="json").status_code == 404
    assert client_for(owner).get(f"{URL}/not-a-uuid").status_code == 404


def test_list_is_scoped_and_filtered(client_for, owner, outsider, deployment, project):
    staging = make_deployment(project, [job("x")], user=owner, environment="staging")
    first, _ = execution_start(deployment=deployment, input={}, user=owner)
    second, _ = execution_start(deployment=staging, input={}, user=owner)
    Execution.objects.filter(pk=first.pk).update(status=ExecutionStatus.SUCCEEDED,
                                                  created_at=timezone.now() - timedelta(hours=2))
    client = client_for(owner)

    def ids(query=""):
        response = client.get(f"{URL}{query}")
        assert response.status_code == 200, response.json()
        return [row["id"] for row in response.json()["results"]]

    assert ids() == [str(second.pk), str(first.pk)]
    assert ids("?status=succeeded") == [str(first.pk)]
    assert ids(f"?workflow={staging.workflow_id}") == [str(second.pk)]
    assert ids(f"?version={deployment.version_id}") == [str(first.pk)]
    assert ids(f"?deployment={deployment.pk}") == [str(first.pk)]
    assert ids("?environment=staging") == [str(second.pk)]
    assert ids("?environment=prod") == [str(first.pk)]
    since = (timezone.now() - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    assert ids(f"?created_after={since}") == [str(second.pk)]
    assert ids(f"?created_before={since}") == [str(first.pk)]
    assert client_for(outsider).get(URL).json()["results"] == []
    assert client.get(f"{URL}?status=bogus").status_code == 400


def test_timeline_and_events(client_for, owner, deployment):
    execution, _ = execution_start(deployment=deployment, input={"v": 7}, user=owner)
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


def test_cancel_stops_a_running_execution(client_for, owner, deployment):
    execution, _ = execution_start(deployment=deployment, input={}, user=owner)

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


# Dead letters ------------------------------------------------------------------------------------

DEAD_LETTERS = "/api/v1/dead-letters"


def dead_lettered_run(deployment, owner, input):
    """Given a run of `deployment` whose only step failed for good: its dead letter."""
    execution, _ = execution_start(deployment=deployment, input=input, user=owner)
    step_execute(execution_id=execution.pk, node_id="boom", shard=0, shard_count=1,
                 delivery=Delivery(task_id="t", worker="ingest1@unit", queue="wg.acme.ingest"))
    return DeadLetter.objects.get(execution=execution)


@pytest.fixture
def failing(groups, project, owner):
    return make_deployment(project, [job("boom", "fail", config={"retryable": False})], user=owner)


def test_dead_letters_are_listed_per_tenant_and_filtered(client_for, owner, outsider, company, failing):
    first = dead_lettered_run(failing, owner, {"n": 1})
    second = dead_lettered_run(failing, owner, {"n": 2})
    DeadLetter.objects.filter(pk=first.pk).update(replayed_at=timezone.now())
    viewer = add_member(company, role=Role.VIEWER)

    def ids(query="", user=viewer):
        response = client_for(user).get(f"{DEAD_LETTERS}{query}")
        assert response.status_code == 200, response.json()
        return [row["id"] for row in response.json()["results"]]

    assert ids() == [second.pk, first.pk]
    assert ids(f"?execution={second.execution_id}") == [second.pk]
    assert ids("?status=pending") == [second.pk] and ids("?status=replayed") == [first.pk]
    row = client_for(viewer).get(f"{DEAD_LETTERS}?status=pending").json()["results"][0]
    assert (row["node_id"], row["attempts"], row["status"], row["deployment"], row["environment"]) == (
        "boom", 1, "pending", failing.pk, "prod")
    assert "payload" not in row  # rendered inputs may hold resolved data; the list shows what failed and where
    assert ids(user=outsider) == []
    assert client_for(viewer).get(f"{DEAD_LETTERS}?status=bogus").status_code == 400


def test_replay_starts_a_new_execution_of_the_same_deployment_with_the_original_input(
    client_for, owner, failing, django_capture_on_commit_callbacks
):
    letter = dead_lettered_run(failing, owner, {"order": 42})

    with django_capture_on_commit_callbacks() as callbacks:
        response = client_for(owner).post(f"{DEAD_LETTERS}/{letter.pk}/replay")

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["id"] != str(letter.execution_id) and len(callbacks) == 1
    assert (body["trigger"], body["input"], body["deployment"], body["status"]) == (
        Trigger.REPLAY, {"order": 42}, failing.pk, "running")
    letter.refresh_from_db()
    assert letter.replayed_at is not None and str(letter.replay_execution_id) == body["id"]
    again = client_for(owner).post(f"{DEAD_LETTERS}/{letter.pk}/replay")
    assert (again.status_code, again.json()["error"], again.json()["execution"]) == (409, "already_replayed", body["id"])


@pytest.mark.parametrize("lifecycle, code", [("pause", "deployment_paused"), ("undeploy", "deployment_undeployed")])
def test_replay_is_refused_when_the_deployment_no_longer_accepts_executions(
    client_for, owner, failing, lifecycle, code, django_capture_on_commit_callbacks
):
    letter = dead_lettered_run(failing, owner, {})
    {"pause": deployment_pause, "undeploy": deployment_undeploy}[lifecycle](deployment=failing, user=owner)

    with django_capture_on_commit_callbacks() as callbacks:
        response = client_for(owner).post(f"{DEAD_LETTERS}/{letter.pk}/replay")

    assert (response.status_code, response.json()["error"]) == (409, code)
    assert not callbacks and Execution.objects.count() == 1
    letter.refresh_from_db()
    assert letter.replayed_at is None


def test_replay_needs_an_editor_of_the_tenant(client_for, company, owner, outsider, failing):
    letter = dead_lettered_run(failing, owner, {})
    viewer = add_member(company, role=Role.VIEWER)

    assert client_for(viewer).post(f"{DEAD_LETTERS}/{letter.pk}/replay").status_code == 403
    assert client_for(outsider).post(f"{DEAD_LETTERS}/{letter.pk}/replay").status_code == 404
    assert client_for(owner).post(f"{DEAD_LETTERS}/999999/replay").status_code == 404
    editor = add_member(company, role=Role.EDITOR)
    assert client_for(editor).post(f"{DEAD_LETTERS}/{letter.pk}/replay").status_code == 201


# Replaying an execution ----------------------------------------------------------------------------


def test_an_execution_is_replayed_as_a_new_run_of_its_deployment_with_its_input(
    client_for, owner, company, outsider, failing, django_capture_on_commit_callbacks
):
    original = dead_lettered_run(failing, owner, {"order": 7}).execution
    viewer = add_member(company, role=Role.VIEWER)

    with django_capture_on_commit_callbacks() as callbacks:
        response = client_for(owner).post(f"/api/v1/executions/{original.pk}/replay")

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["id"] != str(original.pk) and len(callbacks) == 1
    assert (body["trigger"], body["input"], body["deployment"]) == (Trigger.REPLAY, {"order": 7}, failing.pk)
    assert client_for(viewer).post(f"/api/v1/executions/{original.pk}/replay").status_code == 403
    assert client_for(outsider).post(f"/api/v1/executions/{original.pk}/replay").status_code == 404


def test_an_execution_replay_is_refused_when_its_deployment_is_paused(client_for, owner, failing):
    original = dead_lettered_run(failing, owner, {}).execution
    deployment_pause(deployment=failing, user=owner)

    response = client_for(owner).post(f"/api/v1/executions/{original.pk}/replay")

    assert (response.status_code, response.json()["error"]) == (409, "deployment_paused")
    assert Execution.objects.count() == 1
