"""Catalog API: blueprints, versions and job templates; tenancy and roles on every route."""
from __future__ import annotations

import pytest

from controlplane.catalog.models import Blueprint, BlueprintVersion, JobTemplate
from tests.controlplane.catalog.conftest import simple_blueprint

pytestmark = pytest.mark.django_db

API = "/api/v1"


class TestBlueprints:
    def test_create_list_and_detail(self, client_for, editor, company, viewer):
        created = client_for(editor).post(f"{API}/blueprints", {"company": company.pk, "name": "etl", "description": "d"}, format="json")
        assert created.status_code == 201, created.json()
        body = created.json()
        assert body["name"] == "etl" and body["version_count"] == 0 and body["latest_version"] is None

        listed = client_for(viewer).get(f"{API}/blueprints").json()
        assert [b["name"] for b in listed["results"]] == ["etl"]
        assert client_for(viewer).get(f"{API}/blueprints/{body['id']}").json()["id"] == body["id"]

    def test_duplicate_name_is_409(self, client_for, editor, company, blueprint):
        response = client_for(editor).post(f"{API}/blueprints", {"company": company.pk, "name": blueprint.name}, format="json")
        assert response.status_code == 409 and response.json()["error"] == "name_taken"

    def test_publish_is_201_then_200_when_unchanged(self, client_for, editor, blueprint):
        client = client_for(editor)
        first = client.post(f"{API}/blueprints/{blueprint.pk}/publish", {"document": simple_blueprint()}, format="json")
        again = client.post(f"{API}/blueprints/{blueprint.pk}/publish", {"document": simple_blueprint()}, format="json")
        changed = client.post(f"{API}/blueprints/{blueprint.pk}/publish", simple_blueprint("x"), format="json")

        assert (first.status_code, again.status_code, changed.status_code) == (201, 200, 201)
        assert first.json()["id"] == again.json()["id"]
        assert first.json()["ref"] == "fanout-ingest@1" and changed.json()["ref"] == "fanout-ingest@2"
        assert first.json()["document"] == simple_blueprint()
        detail = client.get(f"{API}/blueprints/{blueprint.pk}").json()
        assert (detail["version_count"], detail["latest_version"]) == (2, 2)

    def test_invalid_publish_is_400_with_paths(self, client_for, editor, blueprint):
        doc = simple_blueprint()
        doc["nodes"][1]["config"]["message"] = "{{ .params.nope }}"
        doc["inputs"][0]["to"] = ["ghost"]

        response = client_for(editor).post(f"{API}/blueprints/{blueprint.pk}/publish", {"document": doc}, format="json")

        assert response.status_code == 400
        body = response.json()
        assert body["error"] == "invalid_blueprint"
        assert {(e["path"], e["code"]) for e in body["errors"]} == {("inputs[0].to[0]", "dangling_port")}
        assert not BlueprintVersion.objects.exists()

    def test_versions_list_and_detail(self, client_for, viewer, version):
        listed = client_for(viewer).get(f"{API}/blueprints/{version.blueprint_id}/versions").json()
        assert [(v["number"], v["ref"]) for v in listed["results"]] == [(1, "fanout-ingest@1")]
        assert "document" not in listed["results"][0]
        detail = client_for(viewer).get(f"{API}/blueprint-versions/{version.pk}").json()
        assert detail["document"] == version.document and detail["digest"] == version.digest

    @pytest.mark.parametrize("method", ["put", "patch", "delete"])
    def test_versions_cannot_be_changed_through_the_api(self, client_for, owner, version, method):
        response = getattr(client_for(owner), method)(f"{API}/blueprint-versions/{version.pk}", {"document": {}}, format="json")
        assert response.status_code == 405
        assert BlueprintVersion.objects.get(pk=version.pk).document == version.document

    def test_delete_refused_with_versions_allowed_without(self, client_for, editor, version, company, owner):
        response = client_for(editor).delete(f"{API}/blueprints/{version.blueprint_id}")
        assert response.status_code == 409 and response.json()["error"] == "blueprint_published"
        empty = Blueprint.objects.create(company=company, name="empty")
        assert client_for(editor).delete(f"{API}/blueprints/{empty.pk}").status_code == 204

    def test_patch_description(self, client_for, editor, version):
        response = client_for(editor).patch(f"{API}/blueprints/{version.blueprint_id}", {"description": "new"}, format="json")
        assert response.status_code == 200 and response.json()["description"] == "new"
        renamed = client_for(editor).patch(f"{API}/blueprints/{version.blueprint_id}", {"name": "other"}, format="json")
        assert renamed.status_code == 409


class TestJobTemplates:
    def test_crud(self, client_for, editor, viewer, company):
        client = client_for(editor)
        payload = {
            "company": company.pk,
            "name": "http-get",
            "step_type": "http",
            "defaults": {"method": "GET", "url": "{{ .params.url }}"},
            "param_schema": {"url": {"type": "string", "required": True}},
        }
        created = client.post(f"{API}/job-templates", payload, format="json")
        assert created.status_code == 201, created.json()
        pk = created.json()["id"]

        assert [t["name"] for t in client_for(viewer).get(f"{API}/job-templates").json()["results"]] == ["http-get"]
        updated = client.patch(f"{API}/job-templates/{pk}", {"defaults": {"method": "POST", "url": "{{ .params.url }}"}}, format="json")
        assert updated.status_code == 200 and updated.json()["defaults"]["method"] == "POST"
        assert client.get(f"{API}/job-templates/{pk}").json()["step_type"] == "http"
        assert client.delete(f"{API}/job-templates/{pk}").status_code == 204
        assert not JobTemplate.objects.exists()

    @pytest.mark.parametrize(
        "change, path, code",
        [
            pytest.param({"defaults": []}, "defaults", "invalid_field", id="defaults-not-mapping"),
            pytest.param({"param_schema": {"n": {"type": "float"}}}, "param_schema.n.type", "invalid_field", id="unknown-type"),
            pytest.param({"param_schema": {"n": {"required": "yes"}}}, "param_schema.n.required", "invalid_field", id="required-not-bool"),
            pytest.param({"param_schema": {"n": {"type": "integer", "default": "1"}}}, "param_schema.n.default", "invalid_field", id="default-type"),
            pytest.param({"defaults": {"u": "{{ .params.other }}"}, "param_schema": {"n": {}}}, "defaults.u", "unknown_param", id="undeclared-param"),
            pytest.param({"step_type": "Not A Type"}, "step_type", "invalid", id="bad-step-type"),
            pytest.param({"name": "has space"}, "name", "invalid", id="bad-name"),
        ],
    )
    def test_invalid_template_is_400_with_path(self, client_for, editor, company, change, path, code):
        payload = {"company": company.pk, "name": "t", "step_type": "http", **change}
        response = client_for(editor).post(f"{API}/job-templates", payload, format="json")
        assert response.status_code == 400, response.json()
        assert (path, code) in [(e["path"], e["code"]) for e in response.json()["errors"]]

    def test_duplicate_name_is_409(self, client_for, editor, company, job_template):
        payload = {"company": company.pk, "name": job_template.name, "step_type": "http"}
        assert client_for(editor).post(f"{API}/job-templates", payload, format="json").status_code == 409


# -- tenancy: another company's objects are 404 on every route ----------------------------------

OBJECT_ROUTES = [
    ("get", "blueprints/{blueprint}"),
    ("put", "blueprints/{blueprint}"),
    ("patch", "blueprints/{blueprint}"),
    ("delete", "blueprints/{blueprint}"),
    ("post", "blueprints/{blueprint}/publish"),
    ("get", "blueprints/{blueprint}/versions"),
    ("get", "blueprint-versions/{version}"),
    ("put", "blueprint-versions/{version}"),
    ("patch", "blueprint-versions/{version}"),
    ("delete", "blueprint-versions/{version}"),
    ("get", "job-templates/{template}"),
    ("put", "job-templates/{template}"),
    ("patch", "job-templates/{template}"),
    ("delete", "job-templates/{template}"),
    ("get", "secrets/{secret}"),
    ("put", "secrets/{secret}"),
    ("patch", "secrets/{secret}"),
    ("delete", "secrets/{secret}"),
]


@pytest.mark.parametrize("method, route", OBJECT_ROUTES, ids=[f"{m} {r}" for m, r in OBJECT_ROUTES])
def test_other_tenants_objects_are_404(client_for, outsider, version, job_template, secret, method, route):
    url = f"{API}/" + route.format(blueprint=version.blueprint_id, version=version.pk, template=job_template.pk, secret=secret.pk)
    body = {"document": simple_blueprint("x"), "value": "v", "description": "x", "name": "x", "step_type": "noop"}

    response = getattr(client_for(outsider), method)(url, body, format="json")

    assert response.status_code == 404, response.content
    assert response.json()["error"] == "not_found"


@pytest.mark.parametrize("route", ["blueprints", "job-templates", "secrets"])
def test_creating_in_another_company_is_404(client_for, outsider, company, route):
    body = {"company": company.pk, "name": "x", "step_type": "noop", "value": "v"}
    assert client_for(outsider).post(f"{API}/{route}", body, format="json").status_code == 404


@pytest.mark.parametrize("route", ["blueprints", "job-templates", "secrets"])
def test_lists_show_only_own_companies(client_for, outsider, version, job_template, secret, route):
    response = client_for(outsider).get(f"{API}/{route}")
    assert response.status_code == 200 and response.json()["results"] == []


def test_anonymous_is_refused(client, version):
    assert client.get(f"{API}/blueprints").status_code in (401, 403)


# -- roles --------------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ["blueprints", "job-templates", "secrets"])
def test_viewers_read(client_for, viewer, version, job_template, secret, route):
    assert client_for(viewer).get(f"{API}/{route}").json()["count"] == 1


@pytest.mark.parametrize(
    "method, route, body",
    [
        ("post", "blueprints", {"name": "x"}),
        ("patch", "blueprints/{blueprint}", {"description": "x"}),
        ("post", "blueprints/{blueprint}/publish", {"document": simple_blueprint("x")}),
        ("post", "job-templates", {"name": "x", "step_type": "noop"}),
        ("patch", "job-templates/{template}", {"description": "x"}),
        ("delete", "job-templates/{template}", {}),
    ],
)
def test_viewers_cannot_write_editors_can(client_for, viewer, editor, company, version, job_template, method, route, body):
    url = f"{API}/" + route.format(blueprint=version.blueprint_id, template=job_template.pk)
    body = {"company": company.pk, **body}

    refused = getattr(client_for(viewer), method)(url, body, format="json")
    allowed = getattr(client_for(editor), method)(url, body, format="json")

    assert refused.status_code == 403 and refused.json()["error"] == "insufficient_role"
    assert allowed.status_code in (200, 201, 204), allowed.content
