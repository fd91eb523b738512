"""Workflows: a mutable draft graph per workflow, and the immutable versions published from it.

Deletion policy: a published version is history that deployments and executions point at, so it
is never deleted. `WorkflowVersion.workflow` is PROTECT, which makes a workflow with versions (and
so its project and company) undeletable through the ORM; the services refuse such deletions with
409 and workflows are archived instead. On PostgreSQL a trigger additionally refuses UPDATE and
DELETE of version rows (migration 0002), so not even raw SQL rewrites history. Purging a tenant
outright is a database-administrator operation, not something the application offers.
"""
from __future__ import annotations

from django.conf import settings
from django.db import models

from controlplane.core.errors import Conflict
from controlplane.core.immutability import WriteOnceModel
from controlplane.tenancy.models import Project, slug_validator


def empty_graph() -> dict:
    return {"nodes": [], "edges": []}


class WorkflowStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    ACTIVE = "active", "Active"
    PAUSED = "paused", "Paused"
    ARCHIVED = "archived", "Archived"


class Workflow(models.Model):
    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="workflows", help_text="The project the workflow belongs to."
    )
    slug = models.SlugField(max_length=50, validators=[slug_validator], help_text="Unique within the project.")
    name = models.CharField(max_length=200, help_text="Display name.")
    description = models.TextField(blank=True, default="", help_text="What the workflow does.")
    status = models.CharField(
        max_length=10,
        choices=WorkflowStatus.choices,
        default=WorkflowStatus.DRAFT,
        help_text="draft until first published; active, paused or archived afterwards. Archived workflows "
        "refuse draft edits and publishing.",
    )
    draft_graph = models.JSONField(
        default=empty_graph,
        help_text="The graph being edited. May be invalid; publishing validates it and freezes a copy as a version.",
    )
    draft_revision = models.PositiveIntegerField(
        default=1, help_text="Starts at 1 and grows by one on each draft write; the API's ETag."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="Who created the workflow.",
    )
    created_at = models.DateTimeField(auto_now_add=True, help_text="When the workflow was created.")
    updated_at = models.DateTimeField(auto_now=True, help_text="When the workflow or its draft last changed.")

    class Meta:
        ordering = ["project_id", "slug"]
        constraints = [
            models.UniqueConstraint(fields=["project", "slug"], name="workflow_slug_unique_per_project"),
            models.CheckConstraint(condition=models.Q(draft_revision__gte=1), name="workflow_draft_revision_positive"),
            models.CheckConstraint(
                condition=models.Q(status__in=[s.value for s in WorkflowStatus]), name="workflow_status_is_known"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.project_id}/{self.slug}"

    @property
    def company_id(self) -> int:
        return self.project.company_id


class VersionImmutable(Conflict):
    """A published version was about to be changed or deleted."""

    default_code = "version_immutable"


class WorkflowVersion(WriteOnceModel):
    """A frozen copy of a workflow's graph. Written once by `workflow_publish`, never changed."""

    workflow = models.ForeignKey(
        Workflow,
        on_delete=models.PROTECT,
        related_name="versions",
        help_text="The workflow this version was published from; a workflow with versions cannot be deleted.",
    )
    number = models.PositiveIntegerField(help_text="1, 2, 3 ... per workflow, without gaps.")
    graph = models.JSONField(help_text="The published graph document, as it was when published.")
    digest = models.CharField(
        max_length=71, help_text="sha256:<hex> of the canonical graph; one version per distinct graph."
    )
    published_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Who published the version.",
    )
    published_at = models.DateTimeField(auto_now_add=True, help_text="When the version was published.")

    write_once_error = VersionImmutable
    write_once_messages = {
        "update": "workflow versions are immutable; publish a new version instead",
        "delete": "workflow versions are immutable and are never deleted; archive the workflow instead",
    }

    class Meta:
        ordering = ["workflow_id", "number"]
        constraints = [
            models.UniqueConstraint(fields=["workflow", "number"], name="workflow_version_number_unique"),
            models.UniqueConstraint(fields=["workflow", "digest"], name="workflow_version_digest_unique"),
            models.CheckConstraint(condition=models.Q(number__gte=1), name="workflow_version_number_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.workflow_id} v{self.number}"


class WorkflowTemplate(models.Model):
    """A graph document saved from a published version, to start new workflows from.

    It holds its own copy of the graph, so it outlives edits and archiving of its source; the
    source is kept for reference only."""

    company = models.ForeignKey(
        "tenancy.Company", on_delete=models.CASCADE, related_name="workflow_templates",
        help_text="The tenant that owns the template; others never see it.",
    )
    name = models.CharField(max_length=200, help_text="Unique within the company.")
    description = models.TextField(blank=True, default="", help_text="What workflows made from it do.")
    graph = models.JSONField(help_text="The graph document new workflows start with as their draft.")
    source_workflow = models.ForeignKey(
        Workflow, on_delete=models.SET_NULL, null=True, blank=True, related_name="templates",
        help_text="The workflow the template was saved from.",
    )
    source_version = models.PositiveIntegerField(null=True, blank=True, help_text="The version number saved.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
        help_text="Who saved the template.",
    )
    created_at = models.DateTimeField(auto_now_add=True, help_text="When the template was saved.")

    class Meta:
        ordering = ["company_id", "name"]
        constraints = [
            models.UniqueConstraint(fields=["company", "name"], name="workflow_template_name_unique_per_company"),
        ]

    def __str__(self) -> str:
        return f"{self.company_id}/{self.name}"


class WorkflowAuditKind(models.TextChoices):
    STATUS_CHANGED = "status_changed", "Status changed"
    CLONED = "cloned", "Cloned"
    TEMPLATE_SAVED = "template_saved", "Saved as a template"
    TEMPLATE_DELETED = "template_deleted", "Template deleted"
    INSTANTIATED = "instantiated", "Created from a template"


class WorkflowAuditAppendOnly(Conflict):
    """A workflow audit event was about to be rewritten."""

    default_code = "append_only"


class WorkflowAuditEvent(WriteOnceModel):
    """One operation on a workflow or a template (who, what, when); kept after either is deleted."""

    company = models.ForeignKey(
        "tenancy.Company", on_delete=models.CASCADE, related_name="workflow_audit_events",
        help_text="The tenant concerned.",
    )
    # Ids, not foreign keys: the event outlives a deleted draft workflow, and nulling a key
    # would be an update of an append-only row.
    workflow_id = models.BigIntegerField(
        null=True, blank=True, db_index=True,
        help_text="The workflow concerned (the new one for a clone or a template's instance).",
    )
    template_id = models.BigIntegerField(null=True, blank=True, help_text="The template concerned, if any.")
    kind = models.CharField(max_length=20, choices=WorkflowAuditKind.choices, db_index=True, help_text="What was done.")
    data = models.JSONField(default=dict, blank=True, help_text="Details: statuses before and after, source, template.")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
        help_text="Who did it.",
    )
    actor_username = models.CharField(max_length=150, blank=True, default="", help_text="The actor's username then.")
    at = models.DateTimeField(auto_now_add=True, db_index=True, help_text="When it was done.")

    write_once_error = WorkflowAuditAppendOnly
    write_once_messages = {
        "update": "workflow audit events are append-only",
        "delete": "workflow audit events are append-only",
    }

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["company", "-at"], name="workflow_audit_company_at")]

    def __str__(self) -> str:
        return f"{self.kind} {self.workflow_id} by {self.actor_username or '?'}"
