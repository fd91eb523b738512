"""Admin for deployments. Plans and events are read-only; writes go through the services."""
from __future__ import annotations

from django.contrib import admin

from controlplane.deployments.models import Artifact, Deployment, DeploymentEvent, DeploymentPlan, JobDeployment


class ReadOnlyMixin:
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class JobDeploymentInline(ReadOnlyMixin, admin.TabularInline):
    model = JobDeployment
    extra = 0
    fields = ["job_id", "kind", "type", "group", "replicas", "digest", "status", "updated_at"]
    readonly_fields = fields
    show_change_link = True


class DeploymentEventInline(ReadOnlyMixin, admin.TabularInline):
    model = DeploymentEvent
    extra = 0
    fields = ["created_at", "kind", "actor", "data"]
    readonly_fields = fields
    ordering = ["-id"]


@admin.register(Deployment)
class DeploymentAdmin(admin.ModelAdmin):
    list_display = ["id", "workflow", "environment", "version", "status", "pinned", "auto_reconcile", "revision",
                    "updated_at"]
    list_filter = ["status", "environment", "pinned", "auto_reconcile"]
    search_fields = ["workflow__slug", "environment"]
    readonly_fields = ["workflow", "environment", "version", "status", "placement", "replicas", "pinned",
                       "auto_reconcile", "revision", "created_by", "created_at", "updated_at"]
    inlines = [JobDeploymentInline, DeploymentEventInline]

    def has_add_permission(self, request):
        return False  # deployments come from applying a plan

    def has_delete_permission(self, request, obj=None):
        return False  # history is never rewritten


@admin.register(DeploymentPlan)
class DeploymentPlanAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["id", "workflow", "environment", "version", "summary", "has_errors", "created_at", "applied_at"]
    list_filter = ["has_errors", "environment"]
    search_fields = ["workflow__slug", "id"]
    readonly_fields = ["id", "workflow", "environment", "version", "base_revision", "placement", "replicas", "text",
                       "summary", "has_errors", "plan", "created_by", "created_at", "applied_at"]


@admin.register(JobDeployment)
class JobDeploymentAdmin(admin.ModelAdmin):
    """Editing a spec here is a hand edit: reconcile reports it as `spec_edited` drift."""

    list_display = ["job_id", "deployment", "type", "group", "replicas", "digest", "status", "updated_at"]
    list_filter = ["status", "kind", "group"]
    search_fields = ["job_id", "deployment__workflow__slug"]
    readonly_fields = ["deployment", "job_id", "kind", "type", "group", "digest", "status", "updated_at"]

    def has_add_permission(self, request):
        return False


@admin.register(DeploymentEvent)
class DeploymentEventAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["id", "created_at", "kind", "workflow", "environment", "deployment", "actor"]
    list_filter = ["kind", "environment"]
    search_fields = ["workflow__slug"]
    readonly_fields = ["deployment", "workflow", "environment", "kind", "actor", "data", "created_at"]


@admin.register(Artifact)
class ArtifactAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Stored artifacts are write-once: what runs pinned to a digest execute."""

    list_display = ["digest", "company", "created_at"]
    list_filter = ["company"]
    search_fields = ["digest"]
    readonly_fields = ["company", "digest", "spec", "created_at"]
