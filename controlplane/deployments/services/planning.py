"""Plan, apply and rollback: the only path from a published version to deployed artifacts."""
from __future__ import annotations

import dataclasses
import logging
from functools import partial
from typing import Any, Mapping

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from controlplane.catalog.selectors import blueprint_documents, job_template_documents, secret_names
from controlplane.core.errors import ApplicationError, Conflict
from controlplane.deployments.models import (
    Deployment,
    DeploymentPlan,
    DeploymentStatus,
    EventKind,
    JobDeployment,
    JobDeploymentStatus,
    LIVE_STATUSES,
    artifact_key,
)
from controlplane.deployments.selectors import current_deployment, deployed_jobs, groups_by_slug, planner_fleet
from controlplane.deployments.services.artifacts import artifacts_store
from controlplane.deployments.services.connections import connection_budget
from controlplane.deployments.services.events import deployment_event, event_record
from controlplane.deployments.services.rollout import rollout_sync
from controlplane.tenancy.models import slug_validator
from controlplane.triggers.selectors import chain_issues
from controlplane.triggers.services import deployed_schedules, triggers_sync
from controlplane.workflows.models import Workflow, WorkflowVersion
from pipelines.plan_format import format_plan, plan_to_json, summary_line
from pipelines.planner import plan_deployment

logger = logging.getLogger(__name__)


def _check_overrides(placement: Any, replicas: Any) -> tuple[dict, dict]:
    if not isinstance(placement, Mapping) or not all(isinstance(v, str) for v in placement.values()):
        raise ApplicationError("placement must map job ids or aliases to worker group slugs", path="placement")
    if not isinstance(replicas, Mapping) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in replicas.values()
    ):
        raise ApplicationError("replicas must map job ids or aliases to integers", path="replicas")
    return {str(k): v for k, v in placement.items()}, {str(k): v for k, v in replicas.items()}


def _check_environment(environment: str) -> None:
    try:
        slug_validator(environment)
    except ValidationError as exc:
        raise ApplicationError(f"invalid environment {environment!r}: {exc.messages[0]}", path="environment") from None


@transaction.atomic
def plan_create(
    *,
    workflow: Workflow,
    version: WorkflowVersion,
    environment: str,
    placement: Mapping[str, str] | None = None,
    replicas: Mapping[str, int] | None = None,
    user=None,
) -> DeploymentPlan:
    """Plan `version` onto the fleet and diff it against what (workflow, environment) runs.

    No side effect but the stored preview and a `planned` event. Planning failures do not raise:
    they are the plan's `errors` (with paths); such a plan cannot be applied.
    """
    if version.workflow_id != workflow.pk:
        raise ApplicationError(f"version {version.number} belongs to another workflow", path="version")
    _check_environment(environment)
    placement, replicas = _check_overrides(placement or {}, replicas or {})
    company_id = workflow.project.company_id
    current = current_deployment(workflow, environment)
    plan = plan_deployment(
        version.graph,
        blueprints=blueprint_documents(company_id),
        templates=job_template_documents(company_id),
        placement=placement,
        replicas=replicas,
        fleet=planner_fleet(workflow.project.company),
        deployed=deployed_jobs(current),
        secrets=secret_names(company_id),
        landing_store=settings.LANDING_STORE_URL,
        deployed_schedules=deployed_schedules(current),
    )
    plan = _with_connection_budget(plan, company=workflow.project.company)
    loops = chain_issues(workflow=workflow, version=version, environment=environment)  # a -> b -> a: refused
    plan = dataclasses.replace(plan, errors=(*plan.errors, *loops)) if loops else plan
    row = DeploymentPlan.objects.create(
        workflow=workflow,
        environment=environment,
        version=version,
        base_revision=current.revision if current else 0,
        placement=placement,
        replicas=replicas,
        plan=plan_to_json(plan),
        text=format_plan(plan),
        summary=summary_line(plan),
        has_errors=bool(plan.errors),
        created_by=user,
    )
    event_record(
        kind=EventKind.PLANNED,
        workflow_id=workflow.pk,
        environment=environment,
        deployment=current,
        actor=user,
        data={"plan": str(row.pk), "version": version.number, "summary": row.summary,
              "errors": len(plan.errors), "warnings": len(plan.warnings)},
    )
    logger.info("deploy.planned", extra={"plan_id": str(row.pk), "workflow_id": workflow.pk, "summary": row.summary})
    return row


def _with_connection_budget(plan, *, company):
    """The plan, with a warning when applying it could exceed the database's connections."""
    widest: dict[str, int] = {}
    for job in plan.jobs:
        if job.group is not None:
            widest[job.group] = max(widest.get(job.group, 0), job.replicas)
    budget = connection_budget(company=company, replicas_by_group=widest)
    issue = budget.issue() if budget else None
    return dataclasses.replace(plan, warnings=(*plan.warnings, issue)) if issue else plan


def plan_apply(*, plan: DeploymentPlan, user=None) -> Deployment:
    """Apply exactly the stored plan; 409 `stale_plan` if the deployment moved on, 400 if it has errors."""
    if plan.has_errors:
        with transaction.atomic():
            event_record(
                kind=EventKind.FAILED, workflow_id=plan.workflow_id, environment=plan.environment,
                deployment=current_deployment(plan.workflow, plan.environment), actor=user,
                data={"plan": str(plan.pk), "reason": "plan_has_errors", "errors": plan.plan.get("errors", [])},
            )
        raise ApplicationError(
            f"plan {plan.pk} has {len(plan.plan.get('errors', []))} error(s); fix them and plan again",
            code="plan_has_errors",
            path="plan",
            errors=plan.plan.get("errors", []),
        )
    with transaction.atomic():
        return _apply_locked(plan, user)


def _apply_locked(plan: DeploymentPlan, user, *, rollback_from: int | None = None) -> Deployment:
    Workflow.objects.select_for_update().filter(pk=plan.workflow_id).first()  # one apply per workflow at a time
    plan = DeploymentPlan.objects.select_for_update().select_related("workflow__project__company", "version").get(
        pk=plan.pk
    )
    current = current_deployment(plan.workflow, plan.environment)
    revision = current.revision if current else 0
    if plan.applied_at is not None:
        raise Conflict(f"plan {plan.pk} was already applied; make a new plan", code="stale_plan", path="plan")
    if plan.base_revision != revision:
        raise Conflict(
            f"the deployment changed since plan {plan.pk} was made (revision {plan.base_revision} -> {revision}); "
            "plan again and review the new diff",
            code="stale_plan",
            path="plan",
        )
    groups = groups_by_slug(plan.workflow.project.company_id)
    jobs = plan.plan["jobs"]
    for job in jobs:
        if job["group"] not in groups:
            raise Conflict(f"worker group {job['group']!r} of job {job['job_id']!r} no longer exists; plan again",
                           code="stale_plan", path=f"jobs.{job['job_id']}.group")

    if current is not None and current.status in LIVE_STATUSES:
        deployment = current
        deployment.version = plan.version
        deployment.placement, deployment.replicas = plan.placement, plan.replicas
        deployment.revision = revision + 1
        deployment.status = DeploymentStatus.ACTIVE
        deployment.save()
    else:
        deployment = Deployment.objects.create(
            workflow=plan.workflow, environment=plan.environment, version=plan.version, status=DeploymentStatus.ACTIVE,
            placement=plan.placement, replicas=plan.replicas, revision=revision + 1, created_by=user,
        )
    actions = {c["job_id"]: c["action"] for c in plan.plan["changes"]}
    deployment_event(deployment, EventKind.APPLYING, actor=user, data={
        "plan": str(plan.pk), "version": plan.version.number, "summary": plan.summary, "revision": deployment.revision,
    })

    # Every rendered spec goes to the write-once store first: runs are pinned to these digests and
    # read them back after the next apply has overwritten the JobDeployment rows.
    artifacts_store(company_id=plan.workflow.project.company_id, jobs=jobs)
    existing = {jd.job_id: jd for jd in JobDeployment.objects.filter(deployment=deployment).select_related("group")}
    removed = [jd for job_id, jd in existing.items() if job_id not in {j["job_id"] for j in jobs}]
    touched_groups = {jd.group_id for jd in removed}
    for job in jobs:
        group = groups[job["group"]]
        touched_groups.add(group.id)
        jd = existing.get(job["job_id"])
        if jd is not None:
            touched_groups.add(jd.group_id)
            if jd.digest == job["digest"] and jd.group_id == group.id and jd.spec == job["spec"]:
                continue
        fields = dict(kind=job["kind"], type=job["type"] or "", group=group, replicas=job["replicas"],
                      spec=job["spec"], digest=job["digest"], status=JobDeploymentStatus.STAGED)
        if jd is None:
            JobDeployment.objects.create(deployment=deployment, job_id=job["job_id"], **fields)
        else:
            for name, value in fields.items():
                setattr(jd, name, value)
            jd.save()
        deployment_event(deployment, EventKind.JOB_STAGED, actor=user, data={
            "job_id": job["job_id"], "action": actions.get(job["job_id"], "update"), "group": job["group"],
            "digest": job["digest"],
        })
    unload_keys = [artifact_key(deployment.pk, jd.job_id) for jd in removed]
    JobDeployment.objects.filter(pk__in=[jd.pk for jd in removed]).delete()
    for warning in plan.plan.get("warnings", []):
        deployment_event(deployment, EventKind.WARNING, actor=user, data={"plan": str(plan.pk), **warning})
    triggers_sync(deployment=deployment)  # schedules and chain triggers of the new version
    plan.applied_at = timezone.now()
    plan.save(update_fields=["applied_at"])
    deployment_event(deployment, EventKind.APPLIED, actor=user, data={
        "plan": str(plan.pk), "version": plan.version.number, "summary": plan.summary, "revision": deployment.revision,
        "removed": sorted(jd.job_id for jd in removed), **({"rollback_from": rollback_from} if rollback_from else {}),
    })
    transaction.on_commit(partial(
        rollout_sync, group_ids=sorted(touched_groups), deployment_id=deployment.pk, unload_keys=unload_keys,
        actor_id=getattr(user, "pk", None),
    ))
    logger.info("deploy.applied", extra={"deployment_id": deployment.pk, "plan_id": str(plan.pk)})
    return deployment


def deployment_rollback(*, deployment: Deployment, version: WorkflowVersion, user=None) -> tuple[Deployment, DeploymentPlan]:
    """Deploy an older version through plan + apply; pins it and pauses automatic reconcile."""
    if version.workflow_id != deployment.workflow_id:
        raise ApplicationError(f"version {version.number} belongs to another workflow", path="version")
    plan = plan_create(
        workflow=deployment.workflow, version=version, environment=deployment.environment,
        placement=deployment.placement, replicas=deployment.replicas, user=user,
    )
    if plan.has_errors:
        plan_apply(plan=plan, user=user)  # records `failed` and raises plan_has_errors
    from_version = deployment.version.number
    with transaction.atomic():
        deployment = _apply_locked(plan, user, rollback_from=from_version)
        deployment.pinned, deployment.auto_reconcile = True, False
        deployment.save(update_fields=["pinned", "auto_reconcile", "updated_at"])
        deployment_event(deployment, EventKind.ROLLED_BACK, actor=user, data={
            "plan": str(plan.pk), "from_version": from_version, "to_version": version.number,
        })
    plan.refresh_from_db()
    return deployment, plan
