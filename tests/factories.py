"""Factories for control-plane tests: real rows, no mocks."""
from __future__ import annotations

import itertools

from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from controlplane.tenancy.models import Company, Membership, Project, Role

_sequence = itertools.count(1)


def make_user(username: str | None = None, **fields):
    username = username or f"user{next(_sequence)}"
    return get_user_model().objects.create_user(username=username, password="pw-" + username, **fields)


def make_company(slug: str | None = None, *, owner=None, name: str | None = None) -> Company:
    slug = slug or f"co{next(_sequence)}"
    company = Company.objects.create(slug=slug, name=name or slug.title())
    if owner is not None:
        Membership.objects.create(user=owner, company=company, role=Role.OWNER)
    return company


def add_member(company: Company, user=None, role: Role = Role.VIEWER):
    user = user or make_user()
    Membership.objects.create(user=user, company=company, role=role)
    return user


def make_project(company: Company, slug: str | None = None) -> Project:
    slug = slug or f"proj{next(_sequence)}"
    return Project.objects.create(company=company, slug=slug, name=slug.title())


def api_client_for(user) -> APIClient:
    """A client authenticated with the user's API token, as a script would be."""
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


# Workflows ---------------------------------------------------------------------------------------


def valid_graph(*, message: str = "hello") -> dict:
    """A small graph that passes `validate_graph`: noop -> log."""
    return {
        "nodes": [
            {"id": "start", "type": "noop"},
            {"id": "say", "type": "log", "config": {"message": message}},
        ],
        "edges": [{"from": "start", "to": "say"}],
    }


def make_workflow(project: Project, slug: str | None = None, *, graph: dict | None = None, user=None):
    from controlplane.workflows.models import Workflow

    slug = slug or f"wf{next(_sequence)}"
    return Workflow.objects.create(
        project=project, slug=slug, name=slug.title(), draft_graph=graph or valid_graph(), created_by=user
    )


def make_version(workflow, *, user, graph: dict | None = None):
    """Publish `graph` (default: the workflow's draft) through the service, as the API would."""
    from controlplane.workflows.models import Workflow
    from controlplane.workflows.services import workflow_publish, workflow_update_draft

    if graph is not None:
        workflow = workflow_update_draft(
            user=user, workflow=workflow, expected_revision=workflow.draft_revision, graph=graph
        )
    version, _ = workflow_publish(user=user, workflow=Workflow.objects.get(pk=workflow.pk))
    return version
