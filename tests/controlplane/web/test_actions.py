"""The operator pages' write buttons: the same services, roles and 404s as the API routes."""
from __future__ import annotations

import pytest
from django.urls import reverse

from controlplane.deployments.models import Deployment
from controlplane.executions.models import Execution, ExecutionStatus
from controlplane.tenancy.models import Company, Role
from tests.controlplane.executions.builders import job, make_deployment, make_group, make_live_worker
from tests.controlplane.web.runs import started
from tests.factories import add_member, api_client_for, make_project, make_user

pytestmark = pytest.mark.django_db

ROLES = [Role.OWNER, Role.ADMIN, Role.EDITOR, Role.VIEWER]


@pytest.fixture
def members(company, owner):
    return {Role.OWNER: owner, **{r: add_member(company, make_user(f"{r.value}-user"), r) for r in ROLES[1:]}}


@pytest.fixture
def deployment(groups, project, owner):
    return make_deployment(project, [job("a")], user=owner)


def page_post(client, user, url):
    client.force_login(user)
    return client.post(url)


def outcome(status: int) -> str:
    """What an answer means, the same for a page (302 back to the object) and the API (200/201)."""
    return {200: "done", 201: "done", 302: "done", 403: "forbidden", 404: "not found"}.get(status, str(status))


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.value)
@pytest.mark.parametrize("action", ["pause", "resume"])
def test_deployment_actions_need_the_role_the_api_needs(client, members, groups, project, owner, role, action):
    # Given two equal deployments, one for the page and one for the API (resume needs a paused one)
    mine, theirs = (make_deployment(project, [job("a")], user=owner) for _ in range(2))
    if action == "resume":
        Deployment.objects.filter(pk__in=[mine.pk, theirs.pk]).update(status="paused")

    page = page_post(client, members[role], reverse("web:deployment-action", args=[mine.pk, action]))
    api = api_client_for(members[role]).post(f"/api/v1/deployments/{theirs.pk}/{action}")

    assert outcome(page.status_code) == outcome(api.status_code), (page.status_code, api.content)
    expected = "forbidden" if role == Role.VIEWER else "done"
    assert outcome(page.status_code) == expected
    if expected == "done":
        assert page["Location"] == reverse("web:deployment-detail", args=[mine.pk])
        mine.refresh_from_db()
        assert mine.status == ("paused" if action == "pause" else "active")


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.value)
@pytest.mark.parametrize("action", ["cancel", "replay"])
def test_execution_actions_need_the_role_the_api_needs(client, members, deployment, owner, role, action):
    mine, theirs = started(deployment, user=owner), started(deployment, user=owner)

    page = page_post(client, members[role], reverse("web:execution-action", args=[mine.pk, action]))
    api = api_client_for(members[role]).post(f"/api/v1/executions/{theirs.pk}/{action}")

    assert outcome(page.status_code) == outcome(api.status_code), (page.status_code, api.content)
    assert outcome(page.status_code) == ("forbidden" if role == Role.VIEWER else "done")


def test_a_replay_lands_on_the_new_run(client, members, deployment, owner):
    original = started(deployment, user=owner)

    response = page_post(client, members[Role.EDITOR], reverse("web:execution-action", args=[original.pk, "replay"]))

    replay = Execution.objects.exclude(pk=original.pk).get()
    assert replay.trigger == "replay" and response["Location"] == reverse("web:execution-detail", args=[replay.pk])


def test_a_refused_transition_comes_back_as_a_message(client, members, deployment):
    url = reverse("web:deployment-action", args=[deployment.pk, "resume"])  # it is active, not paused

    response = page_post(client, members[Role.EDITOR], url)
    page = client.get(response["Location"])

    assert response.status_code == 302 and "Resume refused:" in page.content.decode()
    deployment.refresh_from_db()
    assert deployment.status == "active"


def test_cancelling_a_finished_run_is_refused_with_a_message(client, members, deployment, owner):
    run = started(deployment, user=owner)
    Execution.objects.filter(pk=run.pk).update(status=ExecutionStatus.SUCCEEDED)

    response = page_post(client, members[Role.OWNER], reverse("web:execution-action", args=[run.pk, "cancel"]))

    assert "Cancel refused:" in client.get(response["Location"]).content.decode()
    assert Execution.objects.get(pk=run.pk).status == ExecutionStatus.SUCCEEDED


def test_another_tenants_objects_are_404_and_untouched(client, members, deployment, outsider):
    globex = Company.objects.get(slug="globex")
    make_live_worker("globex1@unit", make_group(globex, "ingest"))
    theirs = make_deployment(make_project(globex, "secret"), [job("x")], user=outsider)
    run = started(theirs, user=outsider)

    for url in (reverse("web:deployment-action", args=[theirs.pk, "pause"]),
                reverse("web:execution-action", args=[run.pk, "cancel"]),
                reverse("web:execution-action", args=[run.pk, "replay"])):
        assert page_post(client, members[Role.OWNER], url).status_code == 404, url
    theirs.refresh_from_db()
    assert theirs.status == "active" and Execution.objects.filter(deployment=theirs).count() == 1
    assert Execution.objects.get(pk=run.pk).status == ExecutionStatus.RUNNING


@pytest.mark.parametrize("role, shown", [(Role.VIEWER, []), (Role.EDITOR, ["Pause", "Resume"])], ids=["viewer", "editor"])
def test_buttons_show_only_what_the_role_may_do(client, members, deployment, role, shown):
    client.force_login(members[role])

    body = client.get(reverse("web:deployment-detail", args=[deployment.pk])).content.decode()

    assert [label for label in ("Pause", "Resume") if f">{label}</button>" in body] == shown


def test_actions_are_post_only_known_and_signed_in(client, members, deployment):
    url = reverse("web:deployment-action", args=[deployment.pk, "pause"])
    assert client.post(url)["Location"].startswith("/login/")  # anonymous
    client.force_login(members[Role.OWNER])
    assert client.get(url).status_code == 405
    assert client.post(reverse("web:deployment-action", args=[deployment.pk, "undeploy"])).status_code == 404
    assert client.post(reverse("web:deployment-action", args=[2**63, "pause"])).status_code == 404
    deployment.refresh_from_db()
    assert deployment.status == "active"
