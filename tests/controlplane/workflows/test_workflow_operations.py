"""Workflow operations through the API: clone, templates (save, list, get, delete, instantiate),
archived workflows refusing versions, and the audit trail; roles (viewer 403) and tenancy
(another company's objects are 404)."""
from __future__ import annotations

import pytest

from controlplane.deployments.models import Deployment
from controlplane.tenancy.models import Role
from controlplane.workflows.models import Workflow, WorkflowAuditEvent, WorkflowTemplate
from tests.controlplane.executions.builders import deploy_version, make_group, make_live_worker
from tests.factories import add_member, make_project, make_version, make_workflow, valid_graph

pytestmark = pytest.mark.django_db

API = "/api/v1"


@pytest.fixture
def api(owner, client_for):
    return client_for(owner)


@pytest.fixture
def published(workflow, owner):
    """`workflow` with versions 1 (message "one") and 2 (message "two"); the draft says "draft"."""
    for message in ("one", "two"):
        make_version(Workflow.objects.get(pk=workflow.pk), user=owner, graph=valid_graph(message=message))
    workflow.refresh_from_db()
    workflow.draft_graph = valid_graph(message="draft")
    workflow.save()
    return workflow


def message_of(graph):
    return next(n for n in graph["nodes"] if n["id"] == "say")["config"]["message"]


# Clone -------------------------------------------------------------------------------------------


def test_clone_copies_the_latest_version_as_a_draft_owned_by_the_caller(published, company, client_for):
    editor = add_member(company, role=Role.EDITOR)

    response = client_for(editor).post(f"{API}/workflows/{published.pk}/clone", {"name": "Ingest copy"}, format="json")

    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["slug"], body["name"], body["status"], body["revision"]) == ("ingest-copy", "Ingest copy", "draft", 1)
    assert (body["version_count"], body["latest_version"], body["created_by"]) == (0, None, editor.username)
    assert body["project"] == published.project_id and message_of(body["graph"]) == "two"
    assert response["ETag"] == '"1"'
    clone = Workflow.objects.get(pk=body["id"])
    assert not clone.versions.exists() and not Deployment.objects.filter(workflow=clone).exists()
    [event] = WorkflowAuditEvent.objects.filter(kind="cloned")
    assert (event.workflow_id, event.data, event.actor_id) == (
        clone.pk, {"source_workflow": published.pk, "source_version": 2}, editor.pk)


def test_clone_of_a_given_version_into_another_project_with_a_slug(api, published, company):
    other = make_project(company, "other")

    response = api.post(f"{API}/workflows/{published.pk}/clone",
                        {"name": "Old", "slug": "old-one", "version": 1, "project": other.pk}, format="json")

    assert response.status_code == 201, response.json()
    assert (response.json()["project"], response.json()["slug"]) == (other.pk, "old-one")
    assert message_of(response.json()["graph"]) == "one"


def test_clone_of_a_deployed_workflow_carries_no_deployment_data(api, company, project, owner):
    make_live_worker("w1@unit", make_group(company, "ingest"))
    source = make_workflow(project, "deployed", graph={
        "nodes": [{"id": "a", "type": "noop", "group": "ingest"}], "edges": [],
        "schedules": [{"name": "tick", "every_s": 60}]})
    deployment = deploy_version(make_version(source, user=owner), user=owner)
    hook = api.post(f"{API}/webhooks", {"deployment": deployment.pk, "name": "h"}, format="json")
    assert hook.status_code == 201

    body = api.post(f"{API}/workflows/{source.pk}/clone", {"name": "Fresh"}, format="json").json()

    clone = Workflow.objects.get(pk=body["id"])
    assert not Deployment.objects.filter(workflow=clone).exists()
    assert not clone.deployment_events.exists() and not clone.versions.exists()
    assert body["graph"]["nodes"] == source.draft_graph["nodes"]  # the document, schedules declared in it included
    assert api.get(f"{API}/webhooks", {"deployment": deployment.pk}).json()["count"] == 1


def test_clone_of_a_never_published_workflow_copies_its_draft(api, workflow):
    body = api.post(f"{API}/workflows/{workflow.pk}/clone", {"name": "Copy"}, format="json").json()
    assert body["graph"] == workflow.draft_graph


@pytest.mark.parametrize("payload, status, code, path", [
    ({"name": "Ingest", "slug": "ingest"}, 409, "slug_taken", "slug"),
    ({"name": "!!!"}, 400, "invalid", "slug"),
    ({"name": "X", "version": 9}, 404, "not_found", "version"),
    ({"name": "X", "slug": "Bad Slug"}, 400, None, "slug"),
    ({}, 400, None, "name"),
])
def test_bad_clones_are_refused_with_their_path(api, published, payload, status, code, path):
    response = api.post(f"{API}/workflows/{published.pk}/clone", payload, format="json")

    assert response.status_code == status, response.json()
    assert response.json()["path"] == path
    if code:
        assert response.json()["error"] == code
    assert Workflow.objects.count() == 1


def test_viewers_cannot_clone_and_other_tenants_get_404(published, company, client_for, outsider):
    viewer = add_member(company, role=Role.VIEWER)

    refused = client_for(viewer).post(f"{API}/workflows/{published.pk}/clone", {"name": "V"}, format="json")
    hidden = client_for(outsider).post(f"{API}/workflows/{published.pk}/clone", {"name": "O"}, format="json")

    assert (refused.status_code, refused.json()["error"]) == (403, "insufficient_role")
    assert hidden.status_code == 404
    assert Workflow.objects.count() == 1 and not WorkflowAuditEvent.objects.exists()


def test_a_clone_into_another_companys_project_is_404(api, published, outsider):
    foreign = make_project(outsider.memberships.get().company, "theirs")

    response = api.post(f"{API}/workflows/{published.pk}/clone", {"name": "X", "project": foreign.pk}, format="json")

    assert response.status_code == 404 and Workflow.objects.count() == 1


# Templates ---------------------------------------------------------------------------------------


def save_template(api, workflow, **fields):
    return api.post(f"{API}/templates", {"workflow": workflow.pk, "name": "starter", **fields}, format="json")


def test_template_round_trip(api, published, company):
    saved = save_template(api, published, description="a start", version=1)
    assert saved.status_code == 201, saved.json()
    template = saved.json()
    assert (template["company"], template["source_workflow"], template["source_version"]) == (company.pk, published.pk, 1)
    assert message_of(template["graph"]) == "one" and template["created_by"] == "owner"

    listed = api.get(f"{API}/templates").json()
    assert [t["name"] for t in listed["results"]] == ["starter"] and "graph" not in listed["results"][0]
    assert api.get(f"{API}/templates/{template['id']}").json()["graph"] == template["graph"]

    made = api.post(f"{API}/templates/{template['id']}/instantiate", {"name": "From starter"}, format="json")
    assert made.status_code == 201, made.json()
    body = made.json()
    assert (body["slug"], body["status"], body["project"], body["description"]) == (
        "from-starter", "draft", published.project_id, "a start")
    assert body["graph"] == template["graph"] and body["validation"]["ok"] is True

    # the template is a copy: editing the source leaves it, and deleting it leaves the instance
    published.draft_graph = valid_graph(message="changed")
    published.save()
    assert message_of(api.get(f"{API}/templates/{template['id']}").json()["graph"]) == "one"
    assert api.delete(f"{API}/templates/{template['id']}").status_code == 204
    assert api.get(f"{API}/templates/{template['id']}").status_code == 404
    assert Workflow.objects.filter(pk=body["id"]).exists()
    kinds = list(WorkflowAuditEvent.objects.order_by("id").values_list("kind", flat=True))
    assert kinds == ["template_saved", "instantiated", "template_deleted"]


def test_a_template_defaults_to_the_latest_version_and_names_are_unique_per_company(api, published, outsider,
                                                                                     client_for):
    assert message_of(save_template(api, published).json()["graph"]) == "two"
    again = save_template(api, published)
    assert (again.status_code, again.json()["error"], again.json()["path"]) == (409, "name_taken", "name")
    theirs = make_workflow(make_project(outsider.memberships.get().company, "p"), "theirs", user=outsider)
    make_version(theirs, user=outsider)
    assert save_template(client_for(outsider), theirs).status_code == 201  # the same name in another company


def test_an_unpublished_workflow_cannot_be_saved_as_a_template(api, workflow):
    response = save_template(api, workflow)
    assert (response.status_code, response.json()["error"]) == (409, "not_published")
    assert save_template(api, workflow, version=1).status_code == 404


def test_templates_of_another_company_are_invisible(api, published, outsider, client_for):
    template = save_template(api, published).json()
    them = client_for(outsider)

    assert them.get(f"{API}/templates").json()["count"] == 0
    assert them.get(f"{API}/templates/{template['id']}").status_code == 404
    assert them.delete(f"{API}/templates/{template['id']}").status_code == 404
    instantiate = them.post(f"{API}/templates/{template['id']}/instantiate", {"name": "Mine"}, format="json")
    assert instantiate.status_code == 404
    assert save_template(them, published).status_code == 404  # their request names our workflow
    own = make_project(outsider.memberships.get().company, "own")
    into_ours = api.post(f"{API}/templates/{template['id']}/instantiate", {"name": "X", "project": own.pk},
                         format="json")
    assert into_ours.status_code == 404
    assert WorkflowTemplate.objects.count() == 1 and Workflow.objects.count() == 1


def test_viewers_read_templates_but_cannot_save_delete_or_instantiate(api, published, company, client_for):
    template = save_template(api, published).json()
    viewer = client_for(add_member(company, role=Role.VIEWER))

    assert viewer.get(f"{API}/templates/{template['id']}").status_code == 200
    assert save_template(viewer, published, name="mine").status_code == 403
    assert viewer.delete(f"{API}/templates/{template['id']}").status_code == 403
    made = viewer.post(f"{API}/templates/{template['id']}/instantiate", {"name": "V"}, format="json")
    assert (made.status_code, made.json()["error"]) == (403, "insufficient_role")
    assert WorkflowTemplate.objects.count() == 1 and Workflow.objects.count() == 1


def test_instantiating_needs_a_project_once_the_source_workflow_is_gone(api, company, project, owner):
    source = make_workflow(project, "gone", user=owner)
    make_version(source, user=owner)
    template = save_template(api, source).json()
    WorkflowTemplate.objects.filter(pk=template["id"]).update(source_workflow=None)

    missing = api.post(f"{API}/templates/{template['id']}/instantiate", {"name": "N"}, format="json")
    given = api.post(f"{API}/templates/{template['id']}/instantiate", {"name": "N", "project": project.pk},
                     format="json")

    assert (missing.status_code, missing.json()["path"]) == (400, "project")
    assert given.status_code == 201


# Archive -----------------------------------------------------------------------------------------


def test_an_archived_workflow_refuses_new_versions_and_can_still_be_cloned(api, published):
    assert api.post(f"{API}/workflows/{published.pk}/status", {"status": "archived"}, format="json").status_code == 200

    publish = api.post(f"{API}/workflows/{published.pk}/publish")
    clone = api.post(f"{API}/workflows/{published.pk}/clone", {"name": "Revived"}, format="json")

    assert (publish.status_code, publish.json()["error"]) == (409, "workflow_archived")
    assert published.versions.count() == 2
    assert clone.status_code == 201 and clone.json()["status"] == "draft"


def test_the_audit_trail_is_tenant_scoped(api, published, outsider, client_for):
    api.post(f"{API}/workflows/{published.pk}/status", {"status": "paused"}, format="json")

    assert api.get(f"{API}/workflows/{published.pk}/audit").json()["count"] == 1
    assert client_for(outsider).get(f"{API}/workflows/{published.pk}/audit").status_code == 404


def test_post_workflows_with_a_template_starts_from_it(api, published, project, outsider, client_for):
    template = save_template(api, published, description="from the template").json()

    made = api.post(f"{API}/workflows", {"project": project.pk, "slug": "via-create", "name": "Via create",
                                         "template": template["id"]}, format="json")
    both = api.post(f"{API}/workflows", {"project": project.pk, "slug": "both", "name": "B",
                                         "template": template["id"], "graph": valid_graph()}, format="json")
    foreign_project = make_project(outsider.memberships.get().company, "p")
    theirs = client_for(outsider).post(f"{API}/workflows", {"project": foreign_project.pk, "slug": "steal",
                                                            "name": "S", "template": template["id"]}, format="json")

    assert made.status_code == 201, made.json()
    assert made.json()["graph"] == template["graph"] and made.json()["description"] == "from the template"
    assert WorkflowAuditEvent.objects.filter(kind="instantiated", workflow_id=made.json()["id"]).exists()
    assert (both.status_code, both.json()["path"]) == (400, "template")
    assert (theirs.status_code, theirs.json()["path"]) == (404, "template")
