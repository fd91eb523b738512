"""Reads of the deployments app: tenant-scoped lookups, planner inputs, and what executions need.

For the execution engine:

    active_deployment_for(workflow, environment) -> Deployment | None   (active or paused)
    deployment_accepts_executions(deployment) -> bool                    (active only)
    deployment_execution_graph(deployment) -> {params, jobs, edges}      (from its artifacts)
    deployment_for_execution(workflow, environment) -> Deployment        (or 409 not_deployed / paused)
    deployment_check_accepts(deployment, path=) -> None                  (409 not_deployed / paused / undeployed)
"""
from __future__ import annotations

from graphlib import TopologicalSorter
from typing import Any

from django.db.models import Prefetch, QuerySet
from django.utils import timezone

from controlplane.core.errors import Conflict, NotFound
from controlplane.deployments.models import (
    Deployment,
    DeploymentEvent,
    DeploymentPlan,
    DeploymentStatus,
    JobDeployment,
    LIVE_STATUSES,
    artifact_key,
    parse_artifact_key,
)
from controlplane.fleet.models import Worker, WorkerGroup
from controlplane.fleet.selectors import fleet_snapshot
from controlplane.tenancy.access import member_company_ids
from controlplane.workflows.models import Workflow
from pipelines.graph import DEFAULT_RETRY
from pipelines.planner import DeployedJob, FleetSnapshot, GroupState

# -- execution integration ---------------------------------------------------------------------


def active_deployment_for(workflow: Workflow, environment: str) -> Deployment | None:
    """The live deployment of (workflow, environment): active or paused; None if not deployed."""
    return (
        Deployment.objects.filter(workflow=workflow, environment=environment, status__in=LIVE_STATUSES)
        .select_related("version", "workflow__project")
        .first()
    )


def deployment_accepts_executions(deployment: Deployment | None) -> bool:
    """New executions run only on an active deployment (paused, undeployed, failed refuse with 409)."""
    return deployment is not None and deployment.status == DeploymentStatus.ACTIVE


def deployment_for_execution(workflow: Workflow, environment: str) -> Deployment:
    """The deployment a new execution runs on; 409 `not_deployed` or `deployment_paused` otherwise."""
    deployment = active_deployment_for(workflow, environment)
    if deployment is None:
        raise Conflict(f"workflow {workflow.slug!r} is not deployed to {environment!r}; plan and apply a version first",
                       code="not_deployed", path="environment")
    if not deployment_accepts_executions(deployment):
        raise Conflict(f"the {environment!r} deployment of {workflow.slug!r} is {deployment.status}; resume it first",
                       code="deployment_paused", path="environment")
    return deployment


def deployment_check_accepts(deployment: Deployment, *, path: str = "deployment") -> None:
    """409 unless `deployment` runs new executions: `deployment_paused`, `deployment_undeployed`, or
    `not_deployed` (planned, applying, failed, superseded), each naming the way out."""
    if deployment_accepts_executions(deployment):
        return
    name = f"the {deployment.environment!r} deployment {deployment.pk}"
    if deployment.status == DeploymentStatus.PAUSED:
        raise Conflict(f"{name} is paused; resume it (POST /api/v1/deployments/{deployment.pk}/resume) first",
                       code="deployment_paused", path=path)
    if deployment.status == DeploymentStatus.UNDEPLOYED:
        raise Conflict(f"{name} was undeployed; plan and apply a version again (POST /api/v1/plans)",
                       code="deployment_undeployed", path=path)
    raise Conflict(f"{name} is {deployment.status}; plan and apply a version first (POST /api/v1/plans)",
                   code="not_deployed", path=path)


def deployment_execution_graph(deployment: Deployment) -> dict[str, Any]:
    """The execution graph of a deployment, built from its artifacts (landing adapters included).

    `{params, jobs: [{id, type, config, group, replicas, retry, timeout_s, compensate, artifact}], edges:
    [{from, to, branch}]}`, plus `deployment` (id) and `version` (number). Jobs (and edges) come in run
    order (topological, ties by job id) so a timeline reads top to bottom. `artifact` is the digest of
    the job's stored artifact: the spec its steps run (`controlplane.deployments.artifacts`).
    """
    jobs, edges = [], []
    # Read on every run's start: plain values, no model instances.
    artifacts = (
        JobDeployment.objects.filter(deployment=deployment)
        .order_by("job_id")
        .values_list("job_id", "type", "replicas", "spec", "group__slug", "digest")
    )
    for job_id, job_type, replicas, spec, group, digest in artifacts:
        jobs.append(
            {
                "id": job_id,
                "type": spec.get("type") or job_type,
                "config": spec.get("config") or {},
                "group": group,
                "replicas": replicas,
                "retry": {**DEFAULT_RETRY.to_dict(), **(spec.get("retry") or {})},
                "timeout_s": spec.get("timeout_s"),
                "compensate": spec.get("compensate"),
                "artifact": digest,
                **({"interruptible": True} if spec.get("interruptible") is True else {}),
            }
        )
        branches = spec.get("branches") or {}
        for target in spec.get("downstream") or []:
            edges.append({"from": job_id, "to": target, "branch": branches.get(target)})
    params = (deployment.version.graph or {}).get("params") or {}
    jobs = _in_run_order(jobs, edges)
    position = {job["id"]: index for index, job in enumerate(jobs)}
    edges.sort(key=lambda edge: (position.get(edge["from"], -1), position.get(edge["to"], -1)))
    return {
        "params": params,
        "jobs": jobs,
        "edges": edges,
        "deployment": deployment.pk,
        "version": deployment.version.number,
    }


def _in_run_order(jobs: list[dict[str, Any]], edges: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_id = {job["id"]: job for job in jobs}
    sorter = TopologicalSorter({job_id: set() for job_id in sorted(by_id)})
    for edge in edges:
        if edge["from"] in by_id and edge["to"] in by_id:
            sorter.add(edge["to"], edge["from"])
    sorter.prepare()  # artifacts come from a validated plan: acyclic
    ordered: list[dict[str, Any]] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready())
        ordered.extend(by_id[job_id] for job_id in ready)
        sorter.done(*ready)
    return ordered


# -- planner inputs ----------------------------------------------------------------------------


def current_deployment(workflow: Workflow, environment: str) -> Deployment | None:
    """The newest deployment row of (workflow, environment), whatever its status: plans diff against it."""
    return Deployment.objects.filter(workflow=workflow, environment=environment).order_by("-id").first()


def planner_fleet(company) -> FleetSnapshot:
    groups = {
        slug: GroupState(
            slug=slug,
            live_workers=state["live_workers"],
            concurrency=state["concurrency"],
            step_types=frozenset(state["step_types"]),
        )
        for slug, state in fleet_snapshot(company).items()
    }
    return FleetSnapshot(groups=groups)


def deployed_jobs(deployment: Deployment | None) -> dict[str, DeployedJob]:
    """What the deployment holds, as the planner diffs against (nothing once undeployed)."""
    if deployment is None or deployment.status not in LIVE_STATUSES:
        return {}
    return {
        jd.job_id: DeployedJob(jd.job_id, jd.type, jd.group.slug, jd.replicas, jd.spec, jd.digest)
        for jd in JobDeployment.objects.filter(deployment=deployment).select_related("group")
    }


# -- tenant-scoped reads -----------------------------------------------------------------------


def _company_scope(user) -> QuerySet:
    return member_company_ids(user)


def plan_get(*, user, plan_id) -> DeploymentPlan:
    plan = (
        DeploymentPlan.objects.filter(pk=plan_id, workflow__project__company_id__in=_company_scope(user))
        .select_related("workflow__project", "version")
        .first()
    )
    if plan is None:
        raise NotFound("plan not found")
    return plan


def deployment_list(*, user, workflow_id=None, environment=None, status=None) -> QuerySet[Deployment]:
    queryset = Deployment.objects.filter(workflow__project__company_id__in=_company_scope(user)).select_related(
        "workflow__project", "version"
    )
    if workflow_id not in (None, ""):
        queryset = queryset.filter(workflow_id=workflow_id)
    if environment:
        queryset = queryset.filter(environment=environment)
    if status:
        queryset = queryset.filter(status=status)
    return queryset.order_by("-id")


def deployment_get(*, user, deployment_id) -> Deployment:
    try:
        deployment = deployment_list(user=user).filter(pk=int(deployment_id)).first()
    except (TypeError, ValueError):
        deployment = None
    if deployment is None:
        raise NotFound("deployment not found")
    return deployment


def deployment_jobs(deployment: Deployment) -> QuerySet[JobDeployment]:
    return JobDeployment.objects.filter(deployment=deployment).select_related("group__company").order_by("job_id")


def deployment_events(*, deployment: Deployment) -> QuerySet[DeploymentEvent]:
    return DeploymentEvent.objects.filter(deployment=deployment).select_related("actor").order_by("id")


def last_applied_plan(deployment: Deployment) -> DeploymentPlan | None:
    return (
        DeploymentPlan.objects.filter(
            workflow_id=deployment.workflow_id, environment=deployment.environment, applied_at__isnull=False
        )
        .order_by("-applied_at")
        .first()
    )


def workload_list(*, user) -> list[dict[str, Any]]:
    """Job x group x workers of the caller's live deployments: live status and the digest each holds."""
    now = timezone.now()
    jobs = (
        JobDeployment.objects.filter(
            deployment__workflow__project__company_id__in=_company_scope(user),
            deployment__status__in=LIVE_STATUSES,
        )
        .select_related("deployment__workflow", "group__company")
        .prefetch_related(Prefetch("group__workers", queryset=Worker.objects.order_by("hostname")))
        .order_by("deployment_id", "job_id")
    )
    rows = []
    for jd in jobs:
        key = artifact_key(jd.deployment_id, jd.job_id)
        workers = []
        for worker in jd.group.workers.all():
            held = (worker.loaded_artifacts or {}).get(key)
            workers.append(
                {
                    "hostname": worker.hostname,
                    "status": worker.status,
                    "live": worker.is_live,
                    "heartbeat_age_s": round(worker.heartbeat_age_s(now=now), 3),
                    "loaded_digest": held,
                    "in_sync": held == jd.digest,
                    "consuming": jd.group.queue_name in (worker.active_consumers or []),
                }
            )
        rows.append(
            {
                "deployment": jd.deployment_id,
                "workflow": jd.deployment.workflow.slug,
                "environment": jd.deployment.environment,
                "deployment_status": jd.deployment.status,
                "job_id": jd.job_id,
                "kind": jd.kind,
                "type": jd.type,
                "group": jd.group.slug,
                "queue": jd.group.queue_name,
                "replicas": jd.replicas,
                "digest": jd.digest,
                "status": jd.status,
                "workers": workers,
            }
        )
    return rows


def groups_by_slug(company_id: int) -> dict[str, WorkerGroup]:
    return {g.slug: g for g in WorkerGroup.objects.filter(company_id=company_id).select_related("company")}


def artifact_keys_of_companies(keys: set[str], company_ids: set[int]) -> set[str]:
    """Which worker artifact keys (`<deployment id>:<job id>`) belong to deployments of `company_ids`."""
    by_deployment: dict[int, list[str]] = {}
    for key in keys:
        parsed = parse_artifact_key(key)
        if parsed is not None:
            by_deployment.setdefault(parsed[0], []).append(key)
    owned = Deployment.objects.filter(
        pk__in=list(by_deployment), workflow__project__company_id__in=list(company_ids)
    ).values_list("pk", flat=True)
    return {key for deployment_id in owned for key in by_deployment[deployment_id]}
