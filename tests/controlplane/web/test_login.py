"""Operator sign-in: the pages' own login at /login/, open to every company member whatever their
role; each then sees only their companies; logout; staff keep /admin/."""
from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from controlplane.tenancy.models import Company, Role
from tests.controlplane.executions.builders import job, make_deployment, make_group, make_live_worker
from tests.controlplane.web.runs import started
from tests.factories import add_member, make_project, make_user

pytestmark = pytest.mark.django_db

LOGIN, LOGOUT = "/login/", "/logout/"


def sign_in(client: Client, username: str, password: str | None = None, **extra):
    return client.post(LOGIN, {"username": username, "password": password or f"pw-{username}", **extra})


@pytest.fixture
def acme(groups, project, owner):
    """Given acme's deployed workflow with one run, and a member of each role below owner."""
    deployment = make_deployment(project, [job("a")], user=owner)
    members = {role: add_member(project.company, make_user(f"{role.value}-user"), role)
               for role in (Role.ADMIN, Role.EDITOR, Role.VIEWER)}
    return {"deployment": deployment, "execution": started(deployment, user=owner),
            "users": {Role.OWNER: owner, **members}}


@pytest.fixture
def globex(outsider):
    """Given globex (the outsider's company) with its own deployment and run."""
    company = Company.objects.get(slug="globex")
    make_live_worker("globex1@unit", make_group(company, "ingest"))
    deployment = make_deployment(make_project(company, "secret-project"), [job("x")], user=outsider)
    return {"deployment": deployment, "execution": started(deployment, user=outsider)}


@pytest.mark.parametrize("role", [Role.OWNER, Role.ADMIN, Role.EDITOR, Role.VIEWER], ids=lambda r: r.value)
def test_every_role_signs_in_and_reads_its_companys_pages(client, acme, globex, role):
    user = acme["users"][role]

    response = sign_in(client, user.username)

    assert (response.status_code, response["Location"]) == (302, "/")
    dashboard = client.get(reverse("web:dashboard"))
    assert [e["company"].slug for e in dashboard.context["companies"]] == ["acme"]
    assert f"you are {role.value}" in dashboard.content.decode() and "globex" not in dashboard.content.decode()
    for url in (reverse("web:execution-list"), reverse("web:fleet"),
                reverse("web:execution-detail", args=[acme["execution"].pk]),
                reverse("web:deployment-detail", args=[acme["deployment"].pk])):
        assert client.get(url).status_code == 200, url


@pytest.mark.parametrize("role", [Role.OWNER, Role.VIEWER], ids=lambda r: r.value)
def test_another_tenants_objects_are_404_after_signing_in(client, acme, globex, role):
    sign_in(client, acme["users"][role].username)

    assert client.get(reverse("web:execution-detail", args=[globex["execution"].pk])).status_code == 404
    assert client.get(reverse("web:deployment-detail", args=[globex["deployment"].pk])).status_code == 404
    assert str(globex["execution"].pk) not in client.get(reverse("web:execution-list")).content.decode()


def test_the_outsider_signs_in_and_sees_only_globex(client, acme, globex, outsider):
    sign_in(client, outsider.username)

    assert [e["company"].slug for e in client.get("/").context["companies"]] == ["globex"]
    assert client.get(reverse("web:deployment-detail", args=[acme["deployment"].pk])).status_code == 404


def test_an_anonymous_visitor_is_sent_to_this_login_and_back_after(client, acme):
    url = reverse("web:execution-list")

    first = client.get(url)
    assert (first.status_code, first["Location"]) == (302, f"{LOGIN}?next={url}")
    form = client.get(first["Location"])
    assert form.status_code == 200 and 'name="next" value="/executions/"' in form.content.decode()
    back = sign_in(client, "viewer-user", next=url)
    assert (back.status_code, back["Location"]) == (302, url)


def test_a_wrong_password_or_unknown_user_is_refused_without_saying_which(client, acme):
    for username, password in [("viewer-user", "wrong"), ("nobody", "pw-nobody")]:
        response = sign_in(client, username, password)
        assert response.status_code == 200 and response.context["form"].errors
        assert "correct username and password" in response.content.decode()
    assert client.get("/").status_code == 302


def test_an_inactive_member_cannot_sign_in(client, acme):
    user = acme["users"][Role.EDITOR]
    user.is_active = False
    user.save()

    assert sign_in(client, user.username).status_code == 200
    assert client.get("/").status_code == 302


def test_next_pointing_to_another_site_is_ignored(client, acme):
    response = sign_in(client, "viewer-user", next="https://evil.example/steal")

    assert (response.status_code, response["Location"]) == (302, "/")


def test_the_login_form_carries_a_csrf_token(acme):
    client = Client(enforce_csrf_checks=True)
    form = client.get(LOGIN)
    token = form.cookies["csrftoken"].value

    assert sign_in(client, "viewer-user").status_code == 403  # without the token
    assert sign_in(client, "viewer-user", csrfmiddlewaretoken=token).status_code == 302


def test_logout_is_a_post_that_ends_the_session(client, acme):
    sign_in(client, "editor-user")
    page = client.get("/").content.decode()
    assert f'action="{LOGOUT}"' in page and "csrfmiddlewaretoken" in page

    assert client.get(LOGOUT).status_code == 405  # a link or an <img> cannot sign anyone out
    response = client.post(LOGOUT)

    assert (response.status_code, response["Location"]) == (302, LOGIN)
    assert client.get("/").status_code == 302


def test_a_signed_in_user_opening_login_goes_to_the_dashboard(client, acme):
    sign_in(client, "viewer-user")

    assert client.get(LOGIN)["Location"] == "/"


def test_a_superuser_signs_in_here_sees_no_companies_and_keeps_the_admin(client, acme):
    admin = get_superuser()

    assert sign_in(client, admin.username).status_code == 302
    dashboard = client.get("/")
    assert dashboard.context["companies"] == [] and reverse("admin:index") in dashboard.content.decode()
    assert client.get(reverse("admin:index")).status_code == 200


def test_non_staff_members_see_no_admin_link_and_the_admin_refuses_them(client, acme):
    sign_in(client, "owner")

    assert reverse("admin:index") not in client.get("/").content.decode()
    assert client.get(reverse("admin:index")).status_code == 302  # the admin's own login, staff only


def get_superuser():
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_superuser("root", password="pw-root")
