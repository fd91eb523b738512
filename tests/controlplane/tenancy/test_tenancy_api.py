"""Tenancy API and services: companies, members (owner rules) and projects."""
from __future__ import annotations

import pytest

from controlplane.tenancy.models import Company, Membership, Project, Role
from tests.factories import add_member, make_company, make_project, make_user, make_version

pytestmark = pytest.mark.django_db

API = "/api/v1"


@pytest.fixture
def api(owner, client_for):
    return client_for(owner)


# Companies ---------------------------------------------------------------------------------------


def test_creating_a_company_makes_the_caller_its_owner(client_for):
    # given a user with no company
    alice = make_user("alice")

    # when she creates one
    response = client_for(alice).post(f"{API}/companies", {"slug": "initech", "name": "Initech"}, format="json")

    # then she owns it and sees it in her list
    assert response.status_code == 201, response.content
    assert (response.json()["slug"], response.json()["role"]) == ("initech", "owner")
    assert Membership.objects.get(user=alice).role == Role.OWNER
    listed = client_for(alice).get(f"{API}/companies").json()
    assert [c["slug"] for c in listed["results"]] == ["initech"]


def test_a_taken_company_slug_is_409(api, company):
    response = api.post(f"{API}/companies", {"slug": "acme", "name": "Again"}, format="json")
    assert (response.status_code, response.json()["error"], response.json()["path"]) == (409, "slug_taken", "slug")


def test_the_company_list_shows_the_callers_role_in_each(company, client_for):
    editor = add_member(company, role=Role.EDITOR)
    make_company("second", owner=editor)
    rows = client_for(editor).get(f"{API}/companies").json()["results"]
    assert {(c["slug"], c["role"]) for c in rows} == {("acme", "editor"), ("second", "owner")}


def test_admins_rename_a_company(company, client_for):
    admin = add_member(company, role=Role.ADMIN)
    response = client_for(admin).patch(f"{API}/companies/{company.id}", {"name": "Acme Inc"}, format="json")
    assert response.status_code == 200
    assert Company.objects.get(pk=company.pk).name == "Acme Inc"


def test_a_company_with_published_versions_cannot_be_deleted(api, company, project, owner):
    from tests.factories import make_workflow

    make_version(make_workflow(project, "w", user=owner), user=owner)
    response = api.delete(f"{API}/companies/{company.id}")
    assert (response.status_code, response.json()["error"]) == (409, "has_versions")
    assert Company.objects.filter(pk=company.pk).exists()


# Members -----------------------------------------------------------------------------------------


def test_admins_add_change_and_remove_members(company, client_for):
    admin = client_for(add_member(company, role=Role.ADMIN))
    bob = make_user("bob")

    added = admin.post(f"{API}/companies/{company.id}/members", {"username": "bob", "role": "editor"}, format="json")
    changed = admin.patch(f"{API}/companies/{company.id}/members/{bob.id}", {"role": "viewer"}, format="json")
    listed = admin.get(f"{API}/companies/{company.id}/members").json()["results"]
    removed = admin.delete(f"{API}/companies/{company.id}/members/{bob.id}")

    assert added.status_code == 201 and added.json()["role"] == "editor"
    assert changed.status_code == 200 and changed.json()["role"] == "viewer"
    assert ("bob", "viewer") in {(m["username"], m["role"]) for m in listed}
    assert removed.status_code == 204
    assert not Membership.objects.filter(company=company, user=bob).exists()


def test_adding_an_existing_member_is_409(api, company):
    response = api.post(f"{API}/companies/{company.id}/members", {"username": "owner"}, format="json")
    assert (response.status_code, response.json()["error"]) == (409, "already_member")


@pytest.mark.parametrize(
    "attempt",
    ["grant-owner", "promote-to-owner", "demote-owner", "remove-owner"],
)
def test_only_owners_grant_or_revoke_owner(company, owner, client_for, attempt):
    # given an admin of acme and a second owner
    admin = client_for(add_member(company, role=Role.ADMIN))
    other_owner = add_member(company, role=Role.OWNER)
    editor = add_member(company, role=Role.EDITOR)
    newcomer = make_user("newcomer")
    members = f"{API}/companies/{company.id}/members"

    # when the admin tries to touch the owner role
    response = {
        "grant-owner": lambda: admin.post(members, {"username": newcomer.username, "role": "owner"}, format="json"),
        "promote-to-owner": lambda: admin.patch(f"{members}/{editor.id}", {"role": "owner"}, format="json"),
        "demote-owner": lambda: admin.patch(f"{members}/{other_owner.id}", {"role": "viewer"}, format="json"),
        "remove-owner": lambda: admin.delete(f"{members}/{other_owner.id}"),
    }[attempt]()

    # then it is forbidden, and an owner may do the same
    assert (response.status_code, response.json()["error"]) == (403, "insufficient_role")
    assert Membership.objects.filter(company=company, role=Role.OWNER).count() == 2


@pytest.mark.parametrize("how", ["demote", "remove"])
def test_the_last_owner_cannot_leave(api, company, owner, how):
    url = f"{API}/companies/{company.id}/members/{owner.id}"
    response = api.patch(url, {"role": "admin"}, format="json") if how == "demote" else api.delete(url)
    assert (response.status_code, response.json()["error"]) == (409, "last_owner")
    assert Membership.objects.get(company=company, user=owner).role == Role.OWNER


def test_an_owner_may_step_down_once_another_owner_exists(api, company, owner):
    successor = add_member(company, role=Role.ADMIN)
    members = f"{API}/companies/{company.id}/members"
    assert api.patch(f"{members}/{successor.id}", {"role": "owner"}, format="json").status_code == 200
    assert api.patch(f"{members}/{owner.id}", {"role": "admin"}, format="json").status_code == 200


def test_a_member_of_the_company_is_not_found_in_another(api, company, outsider):
    response = api.get(f"{API}/companies/{company.id}/members/{outsider.id}")
    assert response.status_code == 404


# Projects ----------------------------------------------------------------------------------------


def test_project_crud(api, company):
    created = api.post(f"{API}/projects", {"company": company.id, "slug": "web", "name": "Web"}, format="json")
    assert created.status_code == 201, created.content
    project_id = created.json()["id"]

    renamed = api.patch(f"{API}/projects/{project_id}", {"name": "Website"}, format="json")
    replaced = api.put(f"{API}/projects/{project_id}", {"slug": "site", "name": "Site"}, format="json")
    read = api.get(f"{API}/projects/{project_id}")
    deleted = api.delete(f"{API}/projects/{project_id}")

    assert renamed.json()["name"] == "Website"
    assert (replaced.json()["slug"], replaced.json()["description"]) == ("site", "")
    assert read.json()["company_slug"] == "acme"
    assert deleted.status_code == 204
    assert not Project.objects.filter(pk=project_id).exists()


def test_projects_filter_by_company(api, company, owner):
    other = make_company("second", owner=owner)
    make_project(company, "a")
    make_project(other, "b")
    rows = api.get(f"{API}/projects?company={other.id}").json()["results"]
    assert [p["slug"] for p in rows] == ["b"]


def test_a_duplicate_project_slug_is_409(api, project):
    response = api.post(f"{API}/projects", {"company": project.company_id, "slug": "data", "name": "x"}, format="json")
    assert (response.status_code, response.json()["path"]) == (409, "slug")


def test_a_project_with_published_versions_cannot_be_deleted(api, project, owner):
    from tests.factories import make_workflow

    make_version(make_workflow(project, "w", user=owner), user=owner)
    response = api.delete(f"{API}/projects/{project.id}")
    assert (response.status_code, response.json()["error"]) == (409, "has_versions")
    assert Project.objects.filter(pk=project.pk).exists()


def test_a_project_with_only_drafts_is_deleted_with_them(api, project, owner):
    from controlplane.workflows.models import Workflow
    from tests.factories import make_workflow

    make_workflow(project, "draft-only", user=owner)
    assert api.delete(f"{API}/projects/{project.id}").status_code == 204
    assert not Workflow.objects.exists()
