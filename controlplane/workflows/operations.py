"""Workflow operations: clone, templates (save, delete, instantiate), and their audit trail.

A clone or a template's instance is a new draft workflow owned by the caller: it holds a graph
document and nothing that belongs to a deployment (no deployments, plans, hooks or schedules
registered, no versions). Every operation, and every status change (`services.workflow_set_status`),
appends a `WorkflowAuditEvent` in the same transaction.
"""
from __future__ import annotations

import copy

from django.db import IntegrityError, transaction
from django.utils.text import slugify

from controlplane.core.errors import ApplicationError, Conflict, NotFound
from controlplane.tenancy.access import require_role
from controlplane.tenancy.models import Project, Role
from controlplane.workflows.audit import audit
from controlplane.workflows.models import Workflow, WorkflowAuditKind, WorkflowTemplate, WorkflowVersion
from controlplane.workflows.services import workflow_create


def source_version(workflow: Workflow, number: int | None) -> WorkflowVersion | None:
    """Version `number` of `workflow`, or its latest when None (None if it has none)."""
    versions = workflow.versions.order_by("-number")
    if number is None:
        return versions.first()
    version = versions.filter(number=number).first()
    if version is None:
        raise NotFound(f"workflow {workflow.slug!r} has no version {number}", path="version")
    return version


def _slug_for(name: str, slug: str | None) -> str:
    if slug:
        return slug
    derived = slugify(name)[:50].strip("-")
    if not derived:
        raise ApplicationError(f"cannot make a slug from the name {name!r}; send `slug` too", path="slug")
    return derived


@transaction.atomic
def workflow_clone(*, user, workflow: Workflow, name: str, slug: str | None = None, version: int | None = None,
                   project: Project | None = None) -> Workflow:
    """A new draft workflow holding `workflow`'s latest (or given) version's graph as its draft.

    In `project` (default: the source's; the caller must be an editor there). A workflow never
    published is cloned from its draft.
    """
    target = project or workflow.project
    require_role(user, target.company_id, Role.EDITOR, what="project")
    if target.company_id != workflow.project.company_id:
        raise ApplicationError("a workflow is cloned within its own company; pick a project of that company",
                               code="other_company", path="project")
    source = source_version(workflow, version)
    graph = copy.deepcopy(source.graph if source is not None else workflow.draft_graph)
    clone = workflow_create(user=user, project=target, slug=_slug_for(name, slug), name=name,
                            description=workflow.description, graph=graph)
    audit(company_id=target.company_id, kind=WorkflowAuditKind.CLONED, user=user, workflow_id=clone.pk,
          source_workflow=workflow.pk, source_version=source.number if source else None)
    return clone


@transaction.atomic
def template_create(*, user, workflow: Workflow, name: str, description: str = "",
                    version: int | None = None) -> WorkflowTemplate:
    """Save `workflow`'s latest (or given) published version as a template of its company."""
    company_id = workflow.project.company_id
    require_role(user, company_id, Role.EDITOR, what="workflow")
    source = source_version(workflow, version)
    if source is None:
        raise Conflict(f"workflow {workflow.slug!r} has no published version; publish it first",
                       code="not_published", path="workflow")
    try:
        with transaction.atomic():
            template = WorkflowTemplate.objects.create(
                company_id=company_id, name=name, description=description, graph=copy.deepcopy(source.graph),
                source_workflow=workflow, source_version=source.number, created_by=user,
            )
    except IntegrityError:
        raise Conflict(f"the company already has a template named {name!r}", code="name_taken", path="name") from None
    audit(company_id=company_id, kind=WorkflowAuditKind.TEMPLATE_SAVED, user=user, workflow_id=workflow.pk,
          template_id=template.pk, name=name, source_version=source.number)
    return template


@transaction.atomic
def template_delete(*, user, template: WorkflowTemplate) -> None:
    require_role(user, template.company_id, Role.EDITOR, what="template")
    audit(company_id=template.company_id, kind=WorkflowAuditKind.TEMPLATE_DELETED, user=user,
          template_id=template.pk, name=template.name)
    template.delete()


@transaction.atomic
def template_instantiate(*, user, template: WorkflowTemplate, name: str, slug: str | None = None,
                         project: Project | None = None, description: str | None = None) -> Workflow:
    """A new draft workflow from `template`, in `project` (default: the source workflow's), described
    as the template is unless `description` is given."""
    if project is None:
        project = template.source_workflow.project if template.source_workflow_id else None
        if project is None:
            raise ApplicationError("the template's source workflow is gone; name the project", path="project")
    require_role(user, project.company_id, Role.EDITOR, what="project")
    if project.company_id != template.company_id:
        raise ApplicationError("a template is used within its own company; pick a project of that company",
                               code="other_company", path="project")
    workflow = workflow_create(user=user, project=project, slug=_slug_for(name, slug), name=name,
                               description=template.description if description is None else description,
                               graph=copy.deepcopy(template.graph))
    audit(company_id=project.company_id, kind=WorkflowAuditKind.INSTANTIATED, user=user, workflow_id=workflow.pk,
          template_id=template.pk, template=template.name)
    return workflow
