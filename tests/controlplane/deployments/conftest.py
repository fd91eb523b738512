"""Deployment fixtures: groups `ingest` and `batch` of acme with one live (heartbeat-only) worker each.

Worker rows are written through the fleet heartbeat service, as a real worker would; broadcasts
to these hostnames go to the test's broker and simply get no reply (the timeout is short here).
"""
from __future__ import annotations

import itertools

import pytest
from django.db.models import Max

from controlplane.fleet.services import worker_group_create, worker_heartbeat
from controlplane.workflows.models import WorkflowVersion
from pipelines.graph import graph_digest
from pipelines.steps import step_type_names
from tests.factories import add_member
from controlplane.tenancy.models import Role

_pids = itertools.count(1000)


@pytest.fixture(autouse=True)
def _deploy_settings(settings, tmp_path):
    settings.DEPLOY_CONTROL_TIMEOUT_S = 0.05
    settings.LANDING_STORE_URL = f"file://{tmp_path}/landing"


def heartbeat(hostname: str, queues: list[str], *, concurrency: int = 4, step_types=None, **kwargs):
    return worker_heartbeat(
        hostname=hostname, queues=queues, concurrency=concurrency, pid=next(_pids), software_version="test",
        step_types=list(step_types if step_types is not None else step_type_names()), **kwargs,
    )


@pytest.fixture
def workflow(project, owner):
    """A workflow of acme's `data` project; versions are stored with `publish`."""
    from controlplane.workflows.models import Workflow

    return Workflow.objects.create(project=project, slug="ingest", name="Ingest", draft_graph=two_step_graph(),
                                   created_by=owner)


@pytest.fixture
def groups(company):
    return {slug: worker_group_create(company=company, slug=slug) for slug in ("ingest", "batch")}


@pytest.fixture
def fleet(groups):
    return {slug: heartbeat(f"w-{slug}@test", [group.queue_name]) for slug, group in groups.items()}


def publish(workflow, graph: dict, *, user) -> WorkflowVersion:
    """Store `graph` as the next version (planning checks what publishing does not: groups, catalog, fleet)."""
    number = (workflow.versions.aggregate(n=Max("number"))["n"] or 0) + 1
    return WorkflowVersion.objects.create(
        workflow=workflow, number=number, graph=graph, digest=graph_digest(graph), published_by=user
    )


def two_step_graph(message: str = "hello", *, group: str = "ingest") -> dict:
    return {
        "nodes": [
            {"id": "start", "type": "noop", "group": group},
            {"id": "say", "type": "log", "group": group, "config": {"message": message}},
        ],
        "edges": [{"from": "start", "to": "say"}],
    }


@pytest.fixture
def api(client_for, owner):
    return client_for(owner)


@pytest.fixture
def editor(company):
    return add_member(company, role=Role.EDITOR)


@pytest.fixture
def viewer(company):
    return add_member(company, role=Role.VIEWER)


class Flow:
    """Drive plan/apply through the API for one workflow: `flow.plan(2)`, `flow.apply(plan)`."""

    def __init__(self, client, workflow, environment="prod"):
        self.client, self.workflow, self.environment = client, workflow, environment

    def plan(self, version: int, *, status: int = 201, **body):
        response = self.client.post("/api/v1/plans", {"workflow": self.workflow.pk, "version": version,
                                                      "environment": self.environment, **body}, format="json")
        assert response.status_code == status, response.json()
        return response.json()

    def apply(self, plan: dict, *, status: int = 200):
        response = self.client.post(f"/api/v1/plans/{plan['id']}/apply", format="json")
        assert response.status_code == status, response.json()
        return response.json()

    def deploy(self, version: int, **body):
        return self.apply(self.plan(version, **body))


@pytest.fixture
def flow(api, workflow, fleet):
    return Flow(api, workflow)


def actions(plan: dict) -> dict[str, str]:
    """{job_id: action} of the changes that are not noops."""
    return {c["job_id"]: c["action"] for c in plan["plan"]["changes"] if c["action"] != "noop"}
