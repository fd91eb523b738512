"""bootstrap_tenant (a new user's first command) and the admin pages of tenants and workflows."""
from __future__ import annotations

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from rest_framework.authtoken.models import Token

from controlplane.tenancy.models import Company, Membership, Role
from tests.factories import make_company, make_user, make_version, make_workflow

pytestmark = pytest.mark.django_db


def bootstrap(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("bootstrap_tenant", *args, stdout=out, stderr=err)
    return out.getvalue().strip(), err.getvalue()


def test_bootstrap_creates_user_company_and_prints_a_working_token(client):
    # when a new user bootstraps
    token, log = bootstrap("--username", "alice", "--password", "correct-horse", "--company", "initech",
                           "--company-name", "Initech", "--email", "alice@example.test")

    # then she owns the company and the printed token authenticates her
    alice = get_user_model().objects.get(username="alice")
    assert alice.check_password("correct-horse") and alice.email == "alice@example.test"
    assert Membership.objects.get(user=alice, company__slug="initech").role == Role.OWNER
    assert Company.objects.get(slug="initech").name == "Initech"
    assert token == Token.objects.get(user=alice).key
    assert "created user alice" in log
    response = client.get("/api/v1/companies", HTTP_AUTHORIZATION=f"Token {token}")
    assert [c["slug"] for c in response.json()["results"]] == ["initech"]


def test_bootstrap_is_idempotent():
    first, _ = bootstrap("--username", "alice", "--password", "correct-horse", "--company", "initech")
    second, log = bootstrap("--username", "alice", "--company", "initech")
    assert first == second
    assert "reusing user alice" in log and "reusing company initech" in log
    assert Membership.objects.filter(company__slug="initech").count() == 1


@pytest.mark.parametrize(
    "args,message",
    [
        (["--username", "ghost", "--company", "x"], "--password"),
        (["--username", "alice", "--password", "short", "--company", "x"], "--password"),
        (["--username", "alice", "--password", "correct-horse", "--company", "Not A Slug"], "--company"),
        (["--username", "alice", "--password", "correct-horse", "--company", "taken"], "not its owner"),
    ],
    ids=["new-user-without-password", "weak-password", "bad-slug", "someone-elses-company"],
)
def test_bootstrap_explains_what_is_wrong(args, message):
    make_company("taken", owner=make_user("someone"))
    with pytest.raises(CommandError, match=message):
        bootstrap(*args)
    assert not get_user_model().objects.filter(username__in=["ghost", "alice"]).exists()


# Admin -------------------------------------------------------------------------------------------


@pytest.fixture
def staff_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("root", "root@example.test", "pw-root-123"))
    return client


@pytest.mark.parametrize(
    "url",
    [
        "/admin/tenancy/company/?q=acme",
        "/admin/tenancy/project/?q=data&company__id__exact={company}",
        "/admin/tenancy/membership/?role__exact=owner&q=owner",
        "/admin/workflows/workflow/?status__exact=active&q=ingest",
        "/admin/workflows/workflowversion/?q=ingest",
        "/admin/tenancy/company/{company}/change/",
        "/admin/tenancy/project/{project}/change/",
        "/admin/workflows/workflow/{workflow}/change/",
        "/admin/workflows/workflowversion/{version}/change/",
    ],
)
def test_admin_pages_render_with_search_and_filters(staff_client, company, project, owner, url):
    workflow = make_workflow(project, "ingest", user=owner)
    version = make_version(workflow, user=owner)
    ids = {"company": company.id, "project": project.id, "workflow": workflow.id, "version": version.id}
    response = staff_client.get(url.format(**ids))
    assert response.status_code == 200, url
    assert b"acme" in response.content or b"ingest" in response.content or b"owner" in response.content
