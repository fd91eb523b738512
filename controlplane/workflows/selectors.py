"""Reads of the workflows app, always scoped to the caller's companies (others' objects: 404)."""
from __future__ import annotations

from typing import Any

from django.db.models import Count, Max, QuerySet

from controlplane.core.errors import Conflict, NotFound
from controlplane.tenancy.access import company_scoped, member_company_ids
from controlplane.tenancy.selectors import is_db_id
from controlplane.workflows.models import (
    Workflow,
    WorkflowAuditEvent,
    WorkflowStatus,
    WorkflowTemplate,
    WorkflowVersion,
)
from pipelines.validation import ValidationReport, validate_graph


MAX_VERSION_NUMBER = 2**31 - 1  # PositiveIntegerField


def workflow_list(
    *, user, project_id: int | None = None, company_id: int | None = None, status: str | None = None
) -> QuerySet[Workflow]:
    workflows = (
        Workflow.objects.filter(project__company_id__in=member_company_ids(user))
        .select_related("project", "created_by")
        .annotate(version_count=Count("versions"), latest_version_number=Max("versions__number"))
        .order_by("project_id", "slug")
    )
    if project_id is not None:
        workflows = workflows.filter(project_id=project_id)
    if company_id is not None:
        workflows = workflows.filter(project__company_id=company_id)
    if status is not None:
        workflows = workflows.filter(status=status)
    return workflows


def workflow_get(*, user, workflow_id: int) -> Workflow:
    workflow = workflow_list(user=user).filter(pk=workflow_id).first() if is_db_id(workflow_id) else None
    if workflow is None:
        raise NotFound("workflow not found", path="workflow")
    return workflow


def version_list(*, user, workflow: Workflow) -> QuerySet[WorkflowVersion]:
    return (
        WorkflowVersion.objects.filter(workflow=workflow, workflow__project__company_id__in=member_company_ids(user))
        .select_related("workflow", "published_by")
        .order_by("number")
    )


def version_get(*, user, version_id: int, path: str | None = None) -> WorkflowVersion:
    if not is_db_id(version_id):
        raise NotFound("version not found", path=path)
    version = (
        WorkflowVersion.objects.filter(pk=version_id, workflow__project__company_id__in=member_company_ids(user))
        .select_related("workflow__project", "published_by")
        .first()
    )
    if version is None:
        raise NotFound("version not found", path=path)
    return version


def version_by_number(*, user, workflow: Workflow, number: int, path: str | None = None) -> WorkflowVersion:
    """Version `number` of `workflow` (already read through the caller's companies)."""
    if not 0 < number <= MAX_VERSION_NUMBER:  # digits the column cannot hold name nothing (and must not reach SQL)
        raise NotFound(f"workflow {workflow.slug!r} has no version {number}", path=path)
    version = version_list(user=user, workflow=workflow).select_related("workflow__project").filter(number=number).first()
    if version is None:
        raise NotFound(f"workflow {workflow.slug!r} has no version {number}", path=path)
    return version


def graph_validation(graph: Any) -> ValidationReport:
    """Every issue of a graph document, with paths; never raises."""
    return validate_graph(graph)


def version_diff(*, older: WorkflowVersion, newer: WorkflowVersion):
    """`pipelines.diff.GraphDiff` from `older`'s graph to `newer`'s."""
    from pipelines.diff import diff_graphs

    return diff_graphs(older.graph, newer.graph)


def workflow_check_accepts_runs(status: str, *, slug: str = "", path: str = "workflow") -> None:
    """409 unless a workflow in `status` may start runs: `workflow_paused` or `workflow_archived`."""
    name = f"workflow {slug!r}" if slug else "the workflow"
    if status == WorkflowStatus.PAUSED:
        raise Conflict(f"{name} is paused and starts no runs; set its status to active "
                       "(POST /api/v1/workflows/<id>/status) first", code="workflow_paused", path=path)
    if status == WorkflowStatus.ARCHIVED:
        raise Conflict(f"{name} is archived and starts no runs; set its status to active first",
                       code="workflow_archived", path=path)


def template_list(*, user, company_id: int | None = None) -> QuerySet[WorkflowTemplate]:
    return company_scoped(WorkflowTemplate.objects.select_related("created_by", "source_workflow__project"),
                          user, company_id).order_by("company_id", "name")


def template_get(*, user, template_id, path: str | None = None) -> WorkflowTemplate:
    template = template_list(user=user).filter(pk=template_id).first() if is_db_id(template_id) else None
    if template is None:
        raise NotFound("template not found", path=path)
    return template


def audit_list(*, workflow: Workflow) -> QuerySet[WorkflowAuditEvent]:
    """The audit events of `workflow` (already read through the caller's companies), newest first."""
    return WorkflowAuditEvent.objects.filter(company_id=workflow.project.company_id, workflow_id=workflow.pk)
