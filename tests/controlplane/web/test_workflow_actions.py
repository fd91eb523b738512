"""The workflow page's buttons: pause, resume, archive and clone, with the API's roles and 404s."""
from __future__ import annotations

import pytest
from django.urls import reverse

from controlplane.tenancy.models import Role
from controlplane.workflows.models import Workflow, WorkflowAuditEvent
from tests.controlplane.web.test_actions import ROLES, members, outcome, page_post  # noqa: F401  (fixture)
from tests.factories import api_client_for, make_version

pytestmark = pytest.mark.django_db


@pytest.fixture
def published(workflow, owner):
    make_version(workflow, user=owner)
    return Workflow.objects.get(pk=workflow.pk)


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.value)
@pytest.mark.parametrize("action, status", [("pause", "paused"), ("archive", "archived")])
def test_status_buttons_need_the_role_the_api_needs(client, members, published, role, action, status):
    page = page_post(client, members[role], reverse("web:workflow-action", args=[published.pk, action]))
    api = api_client_for(members[role]).post(f"/api/v1/workflows/{published.pk}/status", {"status": status},
                                             format="json")

    assert outcome(page.status_code) == outcome(api.status_code)
    assert outcome(page.status_code) == ("forbidden" if role == Role.VIEWER else "done")
    published.refresh_from_db()
    assert published.status == ("active" if role == Role.VIEWER else status)


def test_resume_restores_and_each_change_is_audited(client, members, published):
    for action in ("pause", "resume"):
        assert page_post(client, members[Role.EDITOR], reverse("web:workflow-action", args=[published.pk, action])
                         ).status_code == 302
    published.refresh_from_db()
    assert published.status == "active"
    assert [e.data["after"] for e in WorkflowAuditEvent.objects.order_by("id")] == ["paused", "active"]


def test_clone_lands_on_the_new_draft(client, members, published):
    client.force_login(members[Role.EDITOR])

    response = client.post(reverse("web:workflow-action", args=[published.pk, "clone"]), {"name": "Second"})

    clone = Workflow.objects.get(slug="second")
    assert response["Location"] == reverse("web:workflow-detail", args=[clone.pk])
    assert clone.status == "draft" and clone.created_by == members[Role.EDITOR]


def test_a_refused_change_comes_back_as_a_message(client, members, workflow):
    client.force_login(members[Role.EDITOR])
    response = client.post(reverse("web:workflow-action", args=[workflow.pk, "pause"]), follow=True)
    assert "Pause refused" in response.content.decode()  # nothing published yet
    workflow.refresh_from_db()
    assert workflow.status == "draft"


@pytest.mark.parametrize("role, shown", [(Role.VIEWER, []), (Role.EDITOR, ["Pause", "Archive", "Clone"])],
                         ids=["viewer", "editor"])
def test_buttons_show_only_what_the_role_and_status_allow(client, members, published, role, shown):
    client.force_login(members[role])
    body = client.get(reverse("web:workflow-detail", args=[published.pk])).content.decode()
    assert [label for label in ("Pause", "Resume", "Archive", "Clone") if f">{label}</button>" in body] == shown


def test_another_tenants_workflow_is_404_and_unknown_actions_too(client, members, published, outsider):
    client.force_login(outsider)
    assert client.post(reverse("web:workflow-action", args=[published.pk, "archive"])).status_code == 404
    client.force_login(members[Role.OWNER])
    assert client.post(reverse("web:workflow-action", args=[published.pk, "delete"])).status_code == 404
    assert client.get(reverse("web:workflow-action", args=[published.pk, "pause"])).status_code == 405
    published.refresh_from_db()
    assert published.status == "active" and Workflow.objects.count() == 1
