"""Writes of the workflows app: workflows, their drafts, and publishing immutable versions.

Drafts may be saved invalid (only their shape is checked) so that work is never lost; publishing
refuses an invalid graph with 400 `invalid_graph` listing every issue with its path. Publishing is
serialised per workflow by locking the workflow row, so version numbers grow 1, 2, 3 ... without
gaps, and a graph already published (same canonical digest) returns that version instead.
"""
from __future__ import annotations

import copy
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Max

from controlplane.core.errors import ApplicationError, Conflict, PreconditionFailed, issues_to_errors
from controlplane.tenancy.access import require_role
from controlplane.tenancy.models import Project, Role
from controlplane.tenancy.services import check_slug, delete_or_conflict
from controlplane.workflows.documents import clean_graph_document
from controlplane.workflows.audit import audit
from controlplane.workflows.models import Workflow, WorkflowAuditKind, WorkflowStatus, WorkflowVersion, empty_graph
from pipelines.graph import graph_digest
from pipelines.validation import validate_graph

UNSET: Any = object()


def _locked(workflow: Workflow) -> Workflow:
    return Workflow.objects.select_for_update().select_related("project").get(pk=workflow.pk)


def _check_revision(workflow: Workflow, expected_revision: int | None) -> None:
    if expected_revision is not None and expected_revision != workflow.draft_revision:
        raise PreconditionFailed(
            f"the draft changed since revision {expected_revision}; it is at revision {workflow.draft_revision}. "
            "Fetch it again, reapply your change and send the new ETag in If-Match",
            path="If-Match",
            extra={"current_revision": workflow.draft_revision},
        )


def _check_not_archived(workflow: Workflow) -> None:
    if workflow.status == WorkflowStatus.ARCHIVED:
        raise Conflict("the workflow is archived; set its status to paused or active first", code="workflow_archived")


@transaction.atomic
def workflow_create(
    *, user, project: Project, slug: str, name: str, description: str = "", graph: Any = None
) -> Workflow:
    require_role(user, project.company_id, Role.EDITOR, what="project")
    check_slug(slug)
    if Workflow.objects.filter(project=project, slug=slug).exists():
        raise Conflict(f"the project already has a workflow {slug!r}", code="slug_taken", path="slug")
    draft = empty_graph() if graph is None else clean_graph_document(graph)
    try:
        with transaction.atomic():
            return Workflow.objects.create(
                project=project, slug=slug, name=name, description=description, draft_graph=draft, created_by=user
            )
    except IntegrityError:  # a concurrent create with the same slug won
        raise Conflict(f"the project already has a workflow {slug!r}", code="slug_taken", path="slug")


@transaction.atomic
def workflow_update_draft(
    *,
    user,
    workflow: Workflow,
    expected_revision: int | None,
    graph: Any = UNSET,
    name: str | None = None,
    description: str | None = None,
) -> Workflow:
    """Write the draft (and name/description) if it is still at `expected_revision`; +1 revision.

    `expected_revision=None` writes unconditionally (the API's `If-Match: *`).
    """
    require_role(user, workflow.project.company_id, Role.EDITOR, what="workflow")
    workflow = _locked(workflow)
    _check_revision(workflow, expected_revision)
    _check_not_archived(workflow)
    if graph is not UNSET:
        workflow.draft_graph = clean_graph_document(graph)
    if name is not None:
        workflow.name = name
    if description is not None:
        workflow.description = description
    workflow.draft_revision += 1
    workflow.save()
    return workflow


@transaction.atomic
def workflow_set_status(*, user, workflow: Workflow, status: str) -> Workflow:
    """draft only before the first version; active/paused only after it; archived any time.

    A paused or archived workflow starts no runs (manual, schedule, webhook or chained: see
    `selectors.workflow_check_accepts_runs`); an archived one also refuses edits and publishing.
    Active or paused again restores it. Each change is audited."""
    require_role(user, workflow.project.company_id, Role.EDITOR, what="workflow")
    status = WorkflowStatus(status)
    workflow = _locked(workflow)
    published = workflow.versions.exists()
    if status == WorkflowStatus.DRAFT and published:
        raise Conflict("a published workflow cannot go back to draft; pause or archive it", code="invalid_status")
    if status in (WorkflowStatus.ACTIVE, WorkflowStatus.PAUSED) and not published:
        raise Conflict(f"publish a version before setting the workflow {status.value}", code="invalid_status")
    before = workflow.status
    if before == status:
        return workflow  # nothing changed, nothing to audit
    workflow.status = status
    workflow.save(update_fields=["status", "updated_at"])
    audit(company_id=workflow.project.company_id, kind=WorkflowAuditKind.STATUS_CHANGED, user=user,
          workflow_id=workflow.pk, before=before, after=status.value)
    return workflow


@transaction.atomic
def workflow_delete(*, user, workflow: Workflow) -> None:
    require_role(user, workflow.project.company_id, Role.ADMIN, what="workflow")
    workflow = _locked(workflow)
    if workflow.versions.exists():
        raise Conflict(
            "the workflow has published versions, which are never deleted; archive it instead", code="has_versions"
        )
    delete_or_conflict(workflow, what="workflow")


@transaction.atomic
def workflow_publish(
    *, user, workflow: Workflow, expected_revision: int | None = None
) -> tuple[WorkflowVersion, bool]:
    """Freeze the draft as the next version: `(version, True)`, or `(existing, False)` if already published.

    `expected_revision`, when given, makes sure the caller publishes the draft they saw.
    """
    require_role(user, workflow.project.company_id, Role.EDITOR, what="workflow")
    workflow = _locked(workflow)  # serialises publishers of this workflow: numbers without gaps
    _check_revision(workflow, expected_revision)
    _check_not_archived(workflow)
    report = validate_graph(workflow.draft_graph)
    if not report.ok:
        count = len(report.issues)
        raise ApplicationError(
            f"the draft graph has {count} problem{'s' if count != 1 else ''}; fix them and publish again",
            code="invalid_graph",
            path="graph",
            errors=issues_to_errors(report.issues),
        )
    digest = graph_digest(workflow.draft_graph)
    existing = workflow.versions.filter(digest=digest).first()
    if existing is not None:
        return existing, False
    number = (workflow.versions.aggregate(n=Max("number"))["n"] or 0) + 1
    version = WorkflowVersion.objects.create(
        workflow=workflow, number=number, graph=copy.deepcopy(workflow.draft_graph), digest=digest, published_by=user
    )
    if workflow.status == WorkflowStatus.DRAFT:
        workflow.status = WorkflowStatus.ACTIVE
        workflow.save(update_fields=["status", "updated_at"])
    return version, True
