"""The API's promises across resources: roles, tenant isolation, the error shape and the schema."""
from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from controlplane.tenancy.models import Company, Membership, Project, Role
from controlplane.workflows.models import Workflow, WorkflowVersion
from tests.factories import add_member, make_project, make_user, make_version, make_workflow, valid_graph

pytestmark = pytest.mark.django_db

API = "/api/v1"


def assert_error_shape(response, status: int, error: str | None = None):
    assert response.status_code == status, response.content
    body = response.json()
    assert {"error", "detail", "path"} <= set(body), body
    if error is not None:
        assert body["error"] == error, body
    return body


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def workflow(project, owner):
    """A workflow of `project` whose draft is a valid graph (revision 1, nothing published)."""
    return make_workflow(project, "ingest", user=owner)


# Role matrix -------------------------------------------------------------------------------------
#
# Each action with the least role allowed to do it; every role below it gets 403 insufficient_role.

ROLES = [Role.VIEWER, Role.EDITOR, Role.ADMIN, Role.OWNER]


def _read_workflow(client, ctx):
    return client.get(f"{API}/workflows/{ctx['workflow'].id}"), 200


def _edit_draft(client, ctx):
    response = client.patch(
        f"{API}/workflows/{ctx['workflow'].id}",
        {"graph": valid_graph(message="edited")},
        format="json",
        HTTP_IF_MATCH='"1"',
    )
    return response, 200


def _publish(client, ctx):
    return client.post(f"{API}/workflows/{ctx['workflow'].id}/publish"), 201


def _create_project(client, ctx):
    body = {"company": ctx["company"].id, "slug": "new-project", "name": "New"}
    return client.post(f"{API}/projects", body, format="json"), 201


def _delete_project(client, ctx):
    spare = make_project(ctx["company"], "spare")
    return client.delete(f"{API}/projects/{spare.id}"), 204


def _add_member(client, ctx):
    newcomer = make_user("newcomer")
    body = {"username": newcomer.username, "role": "viewer"}
    return client.post(f"{API}/companies/{ctx['company'].id}/members", body, format="json"), 201


def _delete_company(client, ctx):
    return client.delete(f"{API}/companies/{ctx['company'].id}"), 204


ACTIONS = {
    "read": (_read_workflow, Role.VIEWER),
    "edit-draft": (_edit_draft, Role.EDITOR),
    "publish": (_publish, Role.EDITOR),
    "create-project": (_create_project, Role.ADMIN),
    "delete-project": (_delete_project, Role.ADMIN),
    "add-member": (_add_member, Role.ADMIN),
    "delete-company": (_delete_company, Role.OWNER),
}


@pytest.mark.parametrize("role", ROLES, ids=[r.value for r in ROLES])
@pytest.mark.parametrize("action", list(ACTIONS))
def test_role_matrix(action, role, company, project, workflow, client_for):
    # given a member of acme with `role`
    member = add_member(company, make_user(f"member-{role.value}"), role)
    call, minimum = ACTIONS[action]
    ctx = {"company": company, "project": project, "workflow": workflow}

    # when they attempt the action
    response, success_status = call(client_for(member), ctx)

    # then it succeeds exactly when their role is at least the action's minimum
    if role.at_least(minimum):
        assert response.status_code == success_status, response.content
    else:
        assert_error_shape(response, 403, "insufficient_role")


def test_role_matrix_forbidden_actions_change_nothing(company, workflow, client_for):
    # given a viewer
    viewer = add_member(company, role=Role.VIEWER)
    client = client_for(viewer)

    # when they try every write
    for action in ("edit-draft", "publish", "create-project", "add-member", "delete-company"):
        ACTIONS[action][0](client, {"company": company, "workflow": workflow})

    # then nothing was written
    workflow.refresh_from_db()
    assert workflow.draft_revision == 1
    assert not WorkflowVersion.objects.exists()
    assert Project.objects.filter(company=company).count() == 1
    assert Membership.objects.filter(company=company).count() == 2
    assert Company.objects.filter(pk=company.pk).exists()


# Tenant isolation --------------------------------------------------------------------------------


@pytest.fixture
def acme(company, project, owner):
    """acme's objects, including a published version and a second member."""
    workflow = make_workflow(project, "ingest", user=owner)
    version = make_version(workflow, user=owner)
    member = add_member(company, make_user("acme-editor"), Role.EDITOR)
    return {"company": company, "project": project, "workflow": workflow, "version": version, "member": member}


@pytest.fixture
def globex_version(outsider):
    globex = Company.objects.get(slug="globex")
    workflow = make_workflow(make_project(globex, "mine"), "mine", user=outsider)
    return make_version(workflow, user=outsider)


CROSS_TENANT = [
    ("GET", "/companies/{company}", None),
    ("PATCH", "/companies/{company}", {"name": "Pwned"}),
    ("PUT", "/companies/{company}", {"name": "Pwned"}),
    ("DELETE", "/companies/{company}", None),
    ("GET", "/companies/{company}/members", None),
    ("POST", "/companies/{company}/members", {"username": "outsider", "role": "owner"}),
    ("GET", "/companies/{company}/members/{member}", None),
    ("PATCH", "/companies/{company}/members/{member}", {"role": "viewer"}),
    ("DELETE", "/companies/{company}/members/{member}", None),
    ("POST", "/projects", {"company": "{company}", "slug": "evil", "name": "Evil"}),
    ("GET", "/projects/{project}", None),
    ("PATCH", "/projects/{project}", {"name": "Pwned"}),
    ("PUT", "/projects/{project}", {"slug": "pwned", "name": "Pwned"}),
    ("DELETE", "/projects/{project}", None),
    ("POST", "/workflows", {"project": "{project}", "slug": "evil", "name": "Evil"}),
    ("GET", "/workflows/{workflow}", None),
    ("PUT", "/workflows/{workflow}", {"graph": {"nodes": [], "edges": []}}),
    ("PATCH", "/workflows/{workflow}", {"name": "Pwned"}),
    ("DELETE", "/workflows/{workflow}", None),
    ("POST", "/workflows/{workflow}/validate", {}),
    ("POST", "/workflows/{workflow}/publish", None),
    ("POST", "/workflows/{workflow}/status", {"status": "archived"}),
    ("GET", "/workflows/{workflow}/versions", None),
    ("GET", "/versions/{version}", None),
    ("GET", "/versions/{version}/diff?against={version}", None),
    ("GET", "/versions/{own_version}/diff?against={version}", None),
    ("GET", "/versions/{version}/diff?against={own_version}", None),
]


def _fill(template, ids):
    if isinstance(template, str):
        text = template.format(**ids)
        return int(text) if template.startswith("{") and text.isdigit() else text
    if isinstance(template, dict):
        return {key: _fill(value, ids) for key, value in template.items()}
    return template


@pytest.mark.parametrize("method,url,body", CROSS_TENANT, ids=[f"{m} {u}" for m, u, _ in CROSS_TENANT])
@pytest.mark.parametrize("with_if_match", [False, True], ids=["plain", "if-match"])
def test_another_companys_objects_are_404_on_every_endpoint(
    method, url, body, with_if_match, acme, outsider, globex_version, client_for
):
    # given an owner of globex, who knows acme's ids
    ids = {
        "company": acme["company"].id,
        "project": acme["project"].id,
        "workflow": acme["workflow"].id,
        "version": acme["version"].id,
        "member": acme["member"].id,
        "own_version": globex_version.id,
    }
    headers = {"HTTP_IF_MATCH": '"1"'} if with_if_match else {}

    # when they call the endpoint with acme's ids
    response = client_for(outsider).generic(
        method, API + _fill(url, ids), data=_json(_fill(body, ids)), content_type="application/json", **headers
    )

    # then it is a 404 that does not confirm the object exists, and nothing changed
    assert_error_shape(response, 404, "not_found")
    assert Company.objects.get(pk=acme["company"].id).name == "Acme"
    assert Project.objects.filter(pk=acme["project"].id, slug="data").exists()
    assert Workflow.objects.filter(pk=acme["workflow"].id, name="Ingest", status="active").exists()
    assert Membership.objects.filter(company=acme["company"]).count() == 2
    assert not Project.objects.filter(slug="evil").exists()


def _json(body):
    import json

    return "" if body is None else json.dumps(body)


@pytest.mark.parametrize(
    "url",
    ["/companies", "/projects", "/projects?company={company}", "/workflows", "/workflows?company={company}",
     "/workflows?project={project}"],
)
def test_lists_do_not_show_another_companys_objects(url, acme, outsider, globex_version, client_for):
    # given an owner of globex, who knows acme's ids
    ids = {"company": acme["company"].id, "project": acme["project"].id}

    # when they list
    response = client_for(outsider).get(API + url.format(**ids))

    # then only globex's objects are there (and none at all when filtering on acme)
    assert response.status_code == 200
    rows = response.json()["results"]
    companies = {row["id"] if url.startswith("/companies") else row["company"] for row in rows}
    assert acme["company"].id not in companies
    assert bool(rows) == ("{" not in url)


# Error shape: unauthenticated, bad JSON, wrong types ---------------------------------------------


@pytest.mark.parametrize(
    "method,url",
    [("GET", "/companies"), ("POST", "/projects"), ("GET", "/workflows/1"), ("POST", "/workflows/1/publish"),
     ("GET", "/versions/1/diff?against=2")],
)
def test_unauthenticated_requests_are_refused_with_the_error_shape(method, url, db):
    response = APIClient().generic(method, API + url)
    assert response.status_code in (401, 403)
    assert response.json()["error"] in ("not_authenticated", "authentication_failed")


def test_a_wrong_token_is_refused(db):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-token")
    response = client.get(f"{API}/companies")
    assert response.status_code in (401, 403)
    assert_error_shape(response, response.status_code, "authentication_failed")


@pytest.mark.parametrize(
    "method,url",
    [("POST", "/companies"), ("POST", "/projects"), ("POST", "/workflows"), ("PATCH", "/workflows/{workflow}"),
     ("PUT", "/workflows/{workflow}"), ("POST", "/workflows/{workflow}/validate"),
     ("POST", "/companies/{company}/members"), ("PATCH", "/projects/{project}")],
)
@pytest.mark.parametrize(
    "content_type,raw",
    [("application/json", b'{"graph": {"nodes": [}'), ("application/json", b"\xff\xfe"),
     ("application/yaml", b"graph: [unclosed"), ("application/json", b"[" * 5000 + b"]" * 5000)],
    ids=["json-syntax", "not-utf8", "yaml-syntax", "deep-nesting"],
)
def test_malformed_bodies_are_400_never_500(method, url, content_type, raw, company, project, workflow, client_for):
    ids = {"company": company.id, "project": project.id, "workflow": workflow.id}
    response = client_for(company.memberships.get().user).generic(
        method, API + url.format(**ids), data=raw, content_type=content_type, HTTP_IF_MATCH='"1"'
    )
    assert response.status_code == 400, response.content
    assert response.json()["error"] in ("malformed_request", "invalid", "invalid_document", "limit_exceeded")


WRONG_TYPES = [
    ("POST", "/companies", {"slug": 5, "name": ["x"]}, "name"),
    ("POST", "/companies", {"slug": "Not A Slug", "name": "x"}, "slug"),
    ("POST", "/companies", ["not", "an", "object"], None),
    ("POST", "/projects", {"company": "acme", "slug": "p", "name": "P"}, "company"),
    ("POST", "/projects", {"company": 99999999999999999999999, "slug": "p", "name": "P"}, "company"),
    ("GET", "/projects?company=abc", None, "company"),
    ("GET", "/projects?company=99999999999999999999999", None, "company"),
    ("GET", "/workflows?status=sleeping", None, "status"),
    ("GET", "/workflows?project=-1", None, "project"),
    ("POST", "/workflows", {"project": "{project}", "slug": "ok", "name": "Ok", "graph": 7}, "graph"),
    ("POST", "/workflows", {"project": "{project}", "slug": "ok", "name": {"a": 1}}, "name"),
    ("PATCH", "/workflows/{workflow}", {"graph": {"nodes": "many", "edges": [1]}}, "graph.nodes"),
    ("PATCH", "/workflows/{workflow}", {"graph": {"nodes": [{"id": "a"}, 3]}}, "graph.nodes[1]"),
    ("PATCH", "/workflows/{workflow}", {"graph": "nodes: [a, b"}, "graph"),
    ("PATCH", "/workflows/{workflow}", {"name": None}, "name"),
    ("PUT", "/workflows/{workflow}", {"name": "no graph"}, "graph"),
    ("POST", "/workflows/{workflow}/validate", {"graph": [1, 2]}, "graph"),
    ("POST", "/workflows/{workflow}/status", {"status": "sleeping"}, "status"),
    ("POST", "/companies/{company}/members", {"username": "nobody", "role": "viewer"}, "username"),
    ("POST", "/companies/{company}/members", {"username": "owner", "role": "emperor"}, "role"),
    ("GET", "/versions/{version}/diff", None, "against"),
    ("GET", "/versions/{version}/diff?against=abc", None, "against"),
    ("GET", "/versions/{version}/diff?against=0", None, "against"),
]


@pytest.mark.parametrize("method,url,body,path", WRONG_TYPES, ids=[f"{m} {u} {p}" for m, u, _, p in WRONG_TYPES])
def test_wrong_types_are_400_with_the_path(method, url, body, path, company, project, workflow, owner, client_for):
    version = make_version(workflow, user=owner)
    ids = {"company": company.id, "project": project.id, "workflow": workflow.id, "version": version.id}
    response = client_for(owner).generic(
        method,
        API + url.format(**ids),
        data=_json(_fill(body, ids)),
        content_type="application/json",
        HTTP_IF_MATCH=f'"{Workflow.objects.get(pk=workflow.pk).draft_revision}"',
    )
    body = assert_error_shape(response, 400)
    paths = [error["path"] for error in body.get("errors", [])] + [body["path"]]
    assert path in paths if path is not None else body["error"] == "invalid", body


@pytest.mark.parametrize("url", ["/workflows/99999999999999999999999", "/versions/99999999999999999999999",
                                 "/projects/99999999999999999999999", "/companies/99999999999999999999999"])
def test_ids_beyond_the_database_range_are_404(url, owner, client_for):
    assert_error_shape(client_for(owner).get(API + url), 404, "not_found")


# Schema ------------------------------------------------------------------------------------------


def test_the_schema_endpoint_serves_openapi_with_every_resource(owner, client_for):
    response = client_for(owner).get(f"{API}/schema/?format=json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    for path in [
        "/api/v1/companies",
        "/api/v1/companies/{company_id}/members",
        "/api/v1/projects/{project_id}",
        "/api/v1/workflows/{workflow_id}",
        "/api/v1/workflows/{workflow_id}/publish",
        "/api/v1/workflows/{workflow_id}/versions",
        "/api/v1/versions/{version_id}/diff",
    ]:
        assert path in schema["paths"], path
    assert set(schema["paths"]["/api/v1/versions/{version_id}"]) == {"get"}
