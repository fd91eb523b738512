"""Reads the operator pages need beyond one app's selectors, composed from those selectors.

Every queryset here starts from a tenant-scoped selector (`company_list`, `deployment_list`,
`execution_list`, `worker_group_list`, `worker_list`), so a page can only show the caller's rows.
Nothing here writes.
"""
from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from typing import Any

from django.db.models import Count, Max, OuterRef, Subquery, Sum
from django.utils import timezone

from controlplane.deployments.models import LIVE_STATUSES, DeploymentEvent, JobDeployment
from controlplane.deployments.selectors import current_deployment, deployment_jobs, deployment_list
from controlplane.executions.models import ExecutionStatus
from controlplane.executions.selectors import execution_list
from controlplane.fleet.selectors import worker_group_list, worker_list
from controlplane.fleet.serializers import WorkerOutSerializer
from controlplane.tenancy.selectors import company_list
from controlplane.workflows.selectors import workflow_list

RECENT_WINDOW = timedelta(hours=24)


def live_deployments_with_last_event(*, user):
    """The caller's active and paused deployments, each annotated with its newest event (kind, time)."""
    newest = DeploymentEvent.objects.filter(deployment=OuterRef("pk")).order_by("-id")
    return (
        deployment_list(user=user)
        .filter(status__in=LIVE_STATUSES)
        .annotate(
            last_event_kind=Subquery(newest.values("kind")[:1]),
            last_event_at=Subquery(newest.values("created_at")[:1]),
        )
        .order_by("workflow__slug", "environment")
    )


def recent_execution_counts(*, user, now=None) -> dict[int, list[tuple[str, int]]]:
    """Per company id: (status, count) of executions created in the last 24 h, in status order."""
    since = (now or timezone.now()) - RECENT_WINDOW
    rows = (
        execution_list(user=user, created_after=since)
        .order_by()  # group by company and status only, not by the list's ordering column
        .values("company_id", "status")
        .annotate(n=Count("id"))
    )
    counts: dict[int, dict[str, int]] = defaultdict(dict)
    for row in rows:
        counts[row["company_id"]][row["status"]] = row["n"]
    order = list(ExecutionStatus.values)
    return {
        company_id: sorted(by_status.items(), key=lambda item: order.index(item[0]) if item[0] in order else len(order))
        for company_id, by_status in counts.items()
    }


def dashboard(*, user, now=None) -> list[dict[str, Any]]:
    """One entry per company of the caller: live deployments, 24 h execution counts, worker groups."""
    deployments: dict[int, list] = defaultdict(list)
    for deployment in live_deployments_with_last_event(user=user):
        deployments[deployment.workflow.project.company_id].append(deployment)
    groups: dict[int, list] = defaultdict(list)
    for group in worker_group_list(user=user):
        groups[group.company_id].append(group)
    counts = recent_execution_counts(user=user, now=now)
    return [
        {
            "company": company,
            "deployments": deployments.get(company.pk, []),
            "execution_counts": counts.get(company.pk, []),
            "execution_total": sum(n for _, n in counts.get(company.pk, [])),
            "groups": groups.get(company.pk, []),
        }
        for company in company_list(user=user).order_by("slug")
    ]


def fleet_workers(*, user, now=None) -> list[dict[str, Any]]:
    """The workers serving the caller's groups, in the API's shape (`WorkerOutSerializer`: other
    tenants' groups and queues left out), plus `loaded_artifacts_count`: artifacts of the caller's
    own deployments only, so another tenant's artifacts are neither shown nor counted."""
    now = now or timezone.now()
    companies = dict(company_list(user=user).values_list("id", "slug"))
    context = {"company_slugs": set(companies.values()), "company_ids": set(companies), "now": now}
    rows = []
    for worker in worker_list(user=user):
        row = dict(WorkerOutSerializer(worker, context=context).data)
        loaded = row.pop("loaded_artifacts") or {}  # already the caller's own only
        row["loaded_artifacts_count"] = len(loaded)
        row["loaded_artifact_keys"] = sorted(loaded)
        rows.append(row)
    return rows


def workflow_rows(*, user) -> list[dict[str, Any]]:
    """The caller's workflows (company, project, latest version) with their deployments."""
    workflows = list(workflow_list(user=user).select_related("project__company").order_by(
        "project__company__slug", "project__slug", "slug"))
    by_workflow: dict[int, list] = defaultdict(list)
    for deployment in deployment_list(user=user).filter(workflow__in=[w.pk for w in workflows]).order_by("environment"):
        by_workflow[deployment.workflow_id].append(deployment)
    return [{"workflow": w, "deployments": by_workflow.get(w.pk, [])} for w in workflows]


def workflow_deployments(*, user, workflow) -> list:
    """Deployments of one workflow the caller sees, by environment."""
    return list(deployment_list(user=user, workflow_id=workflow.pk).order_by("environment"))


def deployed_job_groups(workflow, environment: str) -> dict[str, str]:
    """Job id -> group slug of what (workflow, environment) runs now: where a planned delete ran."""
    current = current_deployment(workflow, environment)
    if current is None:
        return {}
    return dict(deployment_jobs(current).values_list("job_id", "group__slug"))


def group_capacity(groups) -> dict[int, dict[str, int]]:
    """Per group id: the replicas its widest deployed job needs at once, and the sum over its jobs."""
    rows = (
        JobDeployment.objects.filter(group__in=[g.pk for g in groups], deployment__status__in=LIVE_STATUSES)
        .values("group_id")
        .annotate(widest=Max("replicas"), total=Sum("replicas"), jobs=Count("id"))
    )
    return {row["group_id"]: {"widest": row["widest"], "total": row["total"], "jobs": row["jobs"]} for row in rows}
