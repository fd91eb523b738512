"""Rows the engine tests need: deployed workflows from literal graphs, worker groups, live workers.

Executions run deployments, so a test reads "given a deployed workflow":

    deployment = make_deployment(project, [job("a"), job("b", group="load")], edges(("a", "b")), user=owner)
    execution, _ = execution_start(deployment=deployment, input={}, user=owner)

`make_deployment` publishes the graph and runs the real `plan_create` + `plan_apply`; the groups
need live worker rows advertising the step types (`make_live_worker`, or real workers in e2e).
"""
from __future__ import annotations

import hashlib
import itertools
import json

from django.db.models import Max
from django.utils import timezone

from controlplane.fleet.models import Worker, WorkerGroup, WorkerStatus
from controlplane.workflows.models import Workflow, WorkflowVersion
from pipelines.steps import step_type_names

ENVIRONMENT = "prod"

_seq = itertools.count(1)


def job(node_id: str, type: str = "noop", *, group: str = "ingest", **fields) -> dict:
    return {"id": node_id, "type": type, "group": group, **fields}


def edges(*pairs) -> list[dict]:
    out = []
    for pair in pairs:
        src, dst, *branch = pair
        out.append({"from": src, "to": dst, **({"branch": branch[0]} if branch else {})})
    return out


def graph_of(nodes: list[dict], edge_list: list[dict] = (), params: dict | None = None) -> dict:
    graph = {"nodes": list(nodes), "edges": list(edge_list)}
    if params:
        graph["params"] = params
    return graph


def make_version(project, nodes: list[dict], edge_list: list[dict] = (), *, user, params: dict | None = None,
                 workflow: Workflow | None = None):
    """The next published version of `workflow` (default: a new one) holding the graph.

    Written directly: publishing's own rules are tested in the workflows app; planning checks the rest.
    """
    graph = graph_of(nodes, edge_list, params)
    if workflow is None:
        workflow = Workflow.objects.create(project=project, slug=f"wf{next(_seq)}", name="wf", status="active")
    number = (workflow.versions.aggregate(n=Max("number"))["n"] or 0) + 1
    return WorkflowVersion.objects.create(
        workflow=workflow, number=number, graph=graph,
        digest="sha256:" + hashlib.sha256(json.dumps(graph, sort_keys=True).encode()).hexdigest(), published_by=user,
    )


def deploy_version(version, *, user, environment: str = ENVIRONMENT, **overrides):
    """Plan and apply `version` to `environment` through the deployment services; the Deployment."""
    from controlplane.deployments.services import plan_apply, plan_create

    plan = plan_create(workflow=version.workflow, version=version, environment=environment, user=user, **overrides)
    assert not plan.has_errors, f"the test graph does not plan: {plan.plan['errors']}"
    return plan_apply(plan=plan, user=user)


def make_deployment(project, nodes: list[dict], edge_list: list[dict] = (), *, user, params: dict | None = None,
                    workflow: Workflow | None = None, environment: str = ENVIRONMENT):
    """Given a deployed workflow: publish the graph as the next version and plan + apply it."""
    version = make_version(project, nodes, edge_list, user=user, params=params, workflow=workflow)
    return deploy_version(version, user=user, environment=environment)


def make_group(company, slug: str) -> WorkerGroup:
    return WorkerGroup.objects.get_or_create(company=company, slug=slug, defaults={"name": slug})[0]


def make_live_worker(hostname: str, *groups: WorkerGroup) -> Worker:
    """A worker row with a fresh heartbeat (unit tests: no process behind it)."""
    now = timezone.now()
    worker = Worker.objects.create(
        hostname=hostname, status=WorkerStatus.ONLINE, last_heartbeat=now, started_at=now, concurrency=1,
        queues=[g.queue_name for g in groups], step_types=list(step_type_names()),
    )
    worker.groups.set(groups)
    return worker
