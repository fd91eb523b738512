"""Fixtures of the triggers tests: acme's group `ingest` with a live worker row (no process), and
`deploy(graph)` that publishes a literal graph document (schedules, `on` keys) and plans + applies it."""
from __future__ import annotations

import hashlib
import json

import pytest
from django.db.models import Max

from controlplane.workflows.models import Workflow, WorkflowVersion
from tests.controlplane.executions.builders import deploy_version, make_group, make_live_worker


@pytest.fixture(autouse=True)
def _deploy_settings(settings, tmp_path):
    settings.DEPLOY_CONTROL_TIMEOUT_S = 0.05
    settings.LANDING_STORE_URL = f"file://{tmp_path}/landing"


@pytest.fixture
def groups(company):
    ingest = make_group(company, "ingest")
    make_live_worker("ingest1@unit", ingest)
    return {"ingest": ingest}


def doc(**top) -> dict:
    return {"nodes": [{"id": "a", "type": "noop", "group": "ingest"},
                      {"id": "b", "type": "noop", "group": "ingest"}],
            "edges": [{"from": "a", "to": "b"}], **top}


def publish(workflow: Workflow, graph: dict, *, user) -> WorkflowVersion:
    """The next version holding `graph`, or the version that already holds it (as publishing does)."""
    digest = "sha256:" + hashlib.sha256(json.dumps(graph, sort_keys=True).encode()).hexdigest()
    existing = workflow.versions.filter(digest=digest).first()
    if existing is not None:
        return existing
    number = (workflow.versions.aggregate(n=Max("number"))["n"] or 0) + 1
    return WorkflowVersion.objects.create(workflow=workflow, number=number, graph=graph, digest=digest,
                                          published_by=user)


@pytest.fixture
def make_flow(project, owner, groups):
    def make(slug: str) -> Workflow:
        return Workflow.objects.create(project=project, slug=slug, name=slug, status="active", created_by=owner)
    return make


@pytest.fixture
def deploy(owner, make_flow):
    """deploy(graph, workflow=None) -> Deployment: publish the graph as the next version and apply it."""
    flows: dict[str, Workflow] = {}

    def run(graph: dict, *, workflow: str = "orders", environment: str = "prod"):
        if workflow not in flows:
            flows[workflow] = Workflow.objects.filter(slug=workflow).first() or make_flow(workflow)
        return deploy_version(publish(flows[workflow], graph, user=owner), user=owner, environment=environment)
    return run
