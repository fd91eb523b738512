"""Reads of the triggers app: tenant-scoped hooks, schedules and fires; the chain graph for plans."""
from __future__ import annotations

from django.db.models import QuerySet

from controlplane.deployments.models import LIVE_STATUSES, Deployment
from controlplane.tenancy.access import member_company_ids
from controlplane.triggers.models import Hook, Schedule, ScheduleFire
from controlplane.workflows.models import Workflow, WorkflowVersion
from pipelines.errors import Issue
from pipelines.triggers import chain_cycle, chain_cycle_issue, chain_specs, trigger_issues


def hooks_visible(user) -> QuerySet[Hook]:
    """Hooks of the companies `user` belongs to (another tenant's hook is simply not there: 404)."""
    return Hook.objects.filter(deployment__workflow__project__company_id__in=member_company_ids(user)).select_related(
        "deployment__workflow__project")


def schedules_of(deployment: Deployment) -> QuerySet[Schedule]:
    return Schedule.objects.filter(deployment=deployment).select_related("periodic_task")


def schedule_fires(schedule: Schedule, limit: int = 50) -> list[ScheduleFire]:
    return list(ScheduleFire.objects.filter(schedule=schedule).order_by("-scheduled_at")[:limit])


def chain_issues(*, workflow: Workflow, version: WorkflowVersion, environment: str) -> list[Issue]:
    """A `cycle` issue when deploying `version` would close a loop of chained workflows.

    The loop may run through other workflows of the project: their live deployments in the same
    environment say (by their versions' `on` keys) which workflows trigger them.
    """
    graph = version.graph
    if not isinstance(graph, dict) or trigger_issues(graph):
        return []
    upstreams = [c.workflow for c in chain_specs(graph)]
    if not upstreams:
        return []
    others: dict[str, list[str]] = {}
    live = (Deployment.objects.filter(workflow__project_id=workflow.project_id, environment=environment,
                                      status__in=LIVE_STATUSES).exclude(workflow=workflow)
            .select_related("workflow", "version"))
    for deployment in live:
        other = deployment.version.graph
        if isinstance(other, dict) and not trigger_issues(other):
            others[deployment.workflow.slug] = [c.workflow for c in chain_specs(other)]
    cycle = chain_cycle(workflow.slug, upstreams, others)
    return [chain_cycle_issue(cycle)] if cycle else []
