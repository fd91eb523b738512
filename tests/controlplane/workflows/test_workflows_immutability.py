"""A published version can never be changed or deleted: ORM, QuerySet, database, admin, API."""
from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction
from django.db.models.deletion import ProtectedError

from controlplane.core.errors import Conflict
from controlplane.tenancy.models import Company, Project
from controlplane.workflows.models import VersionImmutable, Workflow, WorkflowVersion
from tests.factories import make_version, make_workflow

pytestmark = pytest.mark.django_db


@pytest.fixture
def version(workflow, owner):
    return make_version(workflow, user=owner)


def assert_unchanged(version):
    stored = WorkflowVersion.objects.values("number", "digest", "graph").get(pk=version.pk)
    assert stored == {"number": version.number, "digest": version.digest, "graph": version.graph}


# ORM and QuerySet --------------------------------------------------------------------------------


def test_saving_an_existing_version_is_refused(version):
    version.graph = {"nodes": [], "edges": []}
    with pytest.raises(VersionImmutable):
        version.save()
    assert_unchanged(WorkflowVersion.objects.get(pk=version.pk))


def test_deleting_a_version_is_refused(version):
    with pytest.raises(VersionImmutable):
        version.delete()
    assert WorkflowVersion.objects.filter(pk=version.pk).exists()


@pytest.mark.parametrize(
    "write",
    [
        lambda qs: qs.update(digest="sha256:forged"),
        lambda qs: qs.delete(),
        lambda qs: qs.bulk_update(list(qs), ["digest"]),
        lambda qs: qs.update_or_create(pk=qs.get().pk, defaults={"digest": "x"}),
    ],
    ids=["update", "delete", "bulk_update", "update_or_create"],
)
def test_bulk_writes_through_the_queryset_are_refused(version, write):
    with pytest.raises(VersionImmutable):
        write(WorkflowVersion.objects.filter(pk=version.pk))
    assert_unchanged(version)


def test_the_immutability_error_is_an_application_conflict():
    assert issubclass(VersionImmutable, Conflict)
    assert VersionImmutable("x").to_dict()["error"] == "version_immutable"


@pytest.mark.parametrize("model", [Workflow, Project, Company], ids=["workflow", "project", "company"])
def test_cascading_deletes_cannot_take_versions_with_them(version, model):
    owner_of = {Workflow: version.workflow, Project: version.workflow.project, Company: version.workflow.project.company}
    with pytest.raises(ProtectedError):
        owner_of[model].delete()
    assert WorkflowVersion.objects.filter(pk=version.pk).exists()


# Database ----------------------------------------------------------------------------------------


def test_the_database_refuses_a_raw_update(version):
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE workflows_workflowversion SET digest = %s WHERE id = %s", ["sha256:forged", version.pk])
    assert_unchanged(version)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite refuses deletes in the ORM only; see 0002")
def test_postgresql_refuses_a_raw_delete(version):
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM workflows_workflowversion WHERE id = %s", [version.pk])
    assert WorkflowVersion.objects.filter(pk=version.pk).exists()


# Admin -------------------------------------------------------------------------------------------


@pytest.fixture
def staff_client(client, django_user_model):
    admin = django_user_model.objects.create_superuser("root", "root@example.test", "pw-root-123")
    client.force_login(admin)
    return client


def test_admin_shows_a_version_read_only(staff_client, version, rf, django_user_model):
    from django.contrib import admin

    # given a superuser
    request = rf.get("/")
    request.user = django_user_model.objects.get(username="root")

    # then the version admin grants no add, change or delete, even to them
    model_admin = admin.site._registry[WorkflowVersion]
    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request, version)
    assert not model_admin.has_delete_permission(request, version)
    assert "delete_selected" not in model_admin.get_actions(request)

    # and the page shows the fields as text, with no form to submit
    page = staff_client.get(f"/admin/workflows/workflowversion/{version.pk}/change/")
    assert page.status_code == 200
    assert version.digest.encode() in page.content
    assert b'name="digest"' not in page.content
    assert b'name="_save"' not in page.content


@pytest.mark.parametrize(
    "method,url",
    [
        ("post", "/admin/workflows/workflowversion/{pk}/change/"),
        ("post", "/admin/workflows/workflowversion/{pk}/delete/"),
        ("get", "/admin/workflows/workflowversion/add/"),
    ],
    ids=["change", "delete", "add"],
)
def test_admin_refuses_to_write_a_version(staff_client, version, method, url):
    response = getattr(staff_client, method)(url.format(pk=version.pk), {"digest": "sha256:forged", "post": "yes"})
    assert response.status_code == 403
    assert_unchanged(version)


def test_admin_bulk_delete_action_is_not_offered_for_versions(staff_client, version):
    response = staff_client.post(
        "/admin/workflows/workflowversion/",
        {"action": "delete_selected", "_selected_action": [version.pk], "post": "yes"},
    )
    assert response.status_code in (200, 302)
    assert WorkflowVersion.objects.filter(pk=version.pk).exists()


def test_admin_cannot_delete_a_workflow_that_has_versions(staff_client, version):
    response = staff_client.post(f"/admin/workflows/workflow/{version.workflow_id}/delete/", {"post": "yes"})
    assert response.status_code == 200  # the "cannot delete: protected objects" page
    assert Workflow.objects.filter(pk=version.workflow_id).exists()


# API ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE", "POST"])
def test_the_api_offers_no_way_to_write_a_version(version, owner, client_for, method):
    response = client_for(owner).generic(
        method, f"/api/v1/versions/{version.pk}", '{"graph": {"nodes": []}}', content_type="application/json"
    )
    assert response.status_code == 405
    assert response.json()["error"] == "method_not_allowed"
    assert_unchanged(version)


def test_a_new_draft_does_not_touch_published_versions(version, owner, client_for):
    workflow = Workflow.objects.get(pk=version.workflow_id)
    client_for(owner).put(
        f"/api/v1/workflows/{workflow.pk}", {"graph": {"nodes": [], "edges": []}}, format="json", HTTP_IF_MATCH='"1"'
    )
    assert_unchanged(version)


def test_an_unpublished_workflow_can_still_be_deleted(project, owner):
    scratch = make_workflow(project, "scratch", user=owner)
    scratch.delete()
    assert not Workflow.objects.filter(pk=scratch.pk).exists()
