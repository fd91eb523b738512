"""Tenancy and roles on every route; the plan CLI's exit codes; append-only events; the schedule."""
from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command

from controlplane.deployments.models import DeploymentEvent, EventImmutable
from tests.controlplane.deployments.conftest import Flow, publish, two_step_graph

pytestmark = pytest.mark.django_db


@pytest.fixture
def deployed(flow, workflow, owner):
    publish(workflow, two_step_graph(), user=owner)
    publish(workflow, two_step_graph("v2"), user=owner)
    return flow.deploy(1)


def test_another_tenant_gets_404_everywhere(client_for, outsider, flow, deployed, workflow):
    plan = flow.plan(2)
    client = client_for(outsider)
    d = deployed["id"]
    for method, url, body in [
        ("get", f"/api/v1/plans/{plan['id']}", None),
        ("post", f"/api/v1/plans/{plan['id']}/apply", None),
        ("get", f"/api/v1/deployments/{d}", None),
        ("get", f"/api/v1/deployments/{d}/events", None),
        ("post", f"/api/v1/deployments/{d}/reconcile", {"dry_run": True}),
        ("post", f"/api/v1/deployments/{d}/rollback", {"version": 1}),
        ("post", f"/api/v1/deployments/{d}/pause", None),
        ("post", f"/api/v1/deployments/{d}/resume", None),
        ("post", f"/api/v1/deployments/{d}/undeploy", None),
        ("post", f"/api/v1/deployments/{d}/accept-drift", {"drift": "spec_edited::say:"}),
        ("post", "/api/v1/plans", {"workflow": workflow.pk, "version": 2, "environment": "prod"}),
    ]:
        response = getattr(client, method)(url, body, format="json")
        assert response.status_code == 404, (url, response.json())
        assert response.json()["error"] == "not_found"
    assert client.get("/api/v1/deployments").json()["results"] == []
    assert client.get("/api/v1/workloads").json()["results"] == []


def test_viewers_read_editors_deploy_admins_undeploy(client_for, viewer, editor, flow, deployed, workflow):
    d = deployed["id"]
    as_viewer = client_for(viewer)
    assert as_viewer.get(f"/api/v1/deployments/{d}").status_code == 200
    assert as_viewer.get(f"/api/v1/deployments/{d}/events").status_code == 200
    assert as_viewer.get("/api/v1/workloads").json()["results"][0]["job_id"] == "say"
    denied = Flow(as_viewer, workflow).plan(2, status=403)
    assert denied["error"] == "insufficient_role"
    assert as_viewer.post(f"/api/v1/deployments/{d}/reconcile", {}, format="json").status_code == 403

    as_editor = Flow(client_for(editor), workflow)
    as_editor.apply(as_editor.plan(2))
    assert as_editor.client.post(f"/api/v1/deployments/{d}/pause").status_code == 200
    assert as_editor.client.post(f"/api/v1/deployments/{d}/undeploy").status_code == 403
    assert flow.client.post(f"/api/v1/deployments/{d}/undeploy").status_code == 200


def test_events_are_append_only(deployed):
    event = DeploymentEvent.objects.first()
    event.data = {"rewritten": True}
    with pytest.raises(EventImmutable):
        event.save()
    with pytest.raises(EventImmutable):
        DeploymentEvent.objects.all().delete()
    with pytest.raises(EventImmutable):
        DeploymentEvent.objects.update(kind="failed")


def _plan_cli(*args) -> tuple[int, str]:
    out = io.StringIO()
    with pytest.raises(SystemExit) as exit_info:
        call_command("plan", "--company", "acme", "--workflow", "ingest", "--environment", "prod", *args,
                     stdout=out, stderr=io.StringIO())
    return exit_info.value.code, out.getvalue()


def test_plan_cli_exit_codes(flow, workflow, owner):
    publish(workflow, two_step_graph(), user=owner)
    publish(workflow, {"nodes": [{"id": "a", "type": "noop", "group": "gpu"}], "edges": []}, user=owner)
    code, text = _plan_cli("--version", "1")
    assert code == 2 and "+ say" in text and "Plan: 2 to add" in text
    code, text = _plan_cli("--version", "1", "--json")
    assert code == 2 and json.loads(text)["format_version"] == 1
    code, text = _plan_cli("--version", "2")
    assert code == 1 and "Error: nodes[0].group: unknown_group" in text
    code, text = _plan_cli("--version", "1", "--placement", "say=nowhere")
    assert code == 1 and "placement.say" in text
    flow.deploy(1)
    code, text = _plan_cli("--version", "1")
    assert code == 0 and "No changes" in text
    code, text = _plan_cli("--version", "1", "--replicas", "say=2")
    assert code == 2 and "~ say" in text
    assert "replicas: 1 -> 2" in text  # the old and the new value


def _plan_cli_error(*args) -> str:
    from django.core.management.base import CommandError

    with pytest.raises(CommandError) as error:
        call_command("plan", "--environment", "prod", "--version", "1", *args, stdout=io.StringIO(), stderr=io.StringIO())
    return str(error.value)


def test_plan_cli_needs_project_only_when_the_slug_is_ambiguous(flow, workflow, owner, project):
    from tests.factories import make_project, make_workflow

    publish(workflow, two_step_graph(), user=owner)
    assert _plan_cli("--version", "1")[0] == 2  # no --project: the slug is unique in acme

    make_workflow(make_project(project.company, "analytics"), workflow.slug, user=owner)
    message = _plan_cli_error("--company", "acme", "--workflow", workflow.slug)
    assert "several projects" in message and "analytics" in message and project.slug in message and "--project" in message
    assert _plan_cli("--version", "1", "--project", project.slug)[0] == 2


@pytest.mark.parametrize(
    "args, expected",
    [
        pytest.param(["--company", "nope", "--workflow", "ingest"], "--company 'nope': no such company", id="company"),
        pytest.param(["--company", "acme", "--workflow", "nope"], "--workflow 'nope': no workflow", id="workflow"),
        pytest.param(["--company", "acme", "--workflow", "ingest", "--project", "nope"], "project 'nope'", id="project"),
        pytest.param(["--company", "globex", "--workflow", "ingest"], "no workflow with that slug in company 'globex'",
                     id="another-company"),
    ],
)
def test_plan_cli_names_what_it_could_not_find(flow, workflow, owner, outsider, args, expected):
    publish(workflow, two_step_graph(), user=owner)
    assert expected in _plan_cli_error(*args)


def test_plan_cli_lists_the_published_versions_of_a_missing_one(flow, workflow, owner):
    publish(workflow, two_step_graph(), user=owner)
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match=r"--version 7: .* no such version \(published: 1\)"):
        call_command("plan", "--company", "acme", "--workflow", "ingest", "--environment", "prod", "--version", "7",
                     stdout=io.StringIO(), stderr=io.StringIO())


def test_periodic_reconcile_is_scheduled():
    from django_celery_beat.models import PeriodicTask

    from controlplane.deployments.services import reconcile_schedule_ensure

    task = PeriodicTask.objects.get(name="flowplane.reconcile_all")  # from the data migrations
    assert task.task == "flowplane.reconcile_all" and task.enabled
    assert reconcile_schedule_ensure().pk == task.pk
    from workers import tasks

    assert tasks.reconcile_all.name == "flowplane.reconcile_all"  # a task of the workers, like every other


def test_a_shared_worker_shows_each_tenant_only_its_own_artifacts(client_for, outsider, owner, flow, deployed):
    from controlplane.deployments.models import artifact_key
    from controlplane.fleet.models import Worker, WorkerGroup
    from controlplane.fleet.services import worker_group_create
    from controlplane.tenancy.models import Company
    from tests.controlplane.deployments.conftest import heartbeat

    # Given one worker serving acme's and globex's groups, holding artifacts of both
    globex = Company.objects.get(slug="globex")
    worker_group_create(company=globex, slug="ingest")
    ours = artifact_key(deployed["id"], "say")
    theirs = artifact_key(deployed["id"] + 1000, "secret-job")
    heartbeat("shared@h", [WorkerGroup.objects.get(company__slug="acme", slug="ingest").queue_name,
                           "wg.globex.ingest"], loaded_artifacts={ours: "sha256:a", theirs: "sha256:b"})
    worker_id = Worker.objects.get(hostname="shared@h").pk

    # When each tenant reads the worker, then each sees only its own deployments' artifacts
    mine = client_for(owner).get(f"/api/v1/workers/{worker_id}").json()
    other = client_for(outsider).get(f"/api/v1/workers/{worker_id}").json()
    assert mine["loaded_artifacts"] == {ours: "sha256:a"}
    assert other["loaded_artifacts"] == {}
