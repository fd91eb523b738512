"""Admin for workflows and their versions. Versions are read-only: no add, change or delete.

Draft graphs and revisions are read-only here too: they change through the API, whose If-Match
keeps concurrent editors from overwriting each other.
"""
from django.contrib import admin
from django.db.models import Count, Max
from django.urls import reverse
from django.utils.html import format_html

from controlplane.workflows.audit import audit
from controlplane.workflows.models import (
    Workflow,
    WorkflowAuditEvent,
    WorkflowAuditKind,
    WorkflowTemplate,
    WorkflowVersion,
)


class ReadOnlyVersionMixin:
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class VersionInline(ReadOnlyVersionMixin, admin.TabularInline):
    model = WorkflowVersion
    extra = 0
    fields = ["number", "digest", "published_by", "published_at"]
    readonly_fields = fields
    show_change_link = True
    ordering = ["-number"]


@admin.register(Workflow)
class WorkflowAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "project", "company", "status", "draft_revision", "version_count", "updated_at"]
    list_filter = ["status", "project__company", "project"]
    search_fields = ["slug", "name", "description", "project__slug", "project__company__slug"]
    list_select_related = ["project__company"]
    readonly_fields = ["draft_graph", "draft_revision", "created_by", "created_at", "updated_at"]
    fields = ["project", "slug", "name", "description", "status", *readonly_fields]
    autocomplete_fields = ["project"]
    inlines = [VersionInline]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_versions=Count("versions"), _latest=Max("versions__number"))

    def get_readonly_fields(self, request, obj=None):
        # The project of an existing workflow is fixed: its versions belong to that tenant.
        return [*self.readonly_fields, "project"] if obj is not None else self.readonly_fields

    @admin.display(description="company", ordering="project__company__slug")
    def company(self, workflow):
        return workflow.project.company

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if change and "status" in form.changed_data:  # audited like the API's status changes
            audit(company_id=obj.project.company_id, kind=WorkflowAuditKind.STATUS_CHANGED, user=request.user,
                  workflow_id=obj.pk, before=form.initial.get("status"), after=obj.status, via="admin")

    @admin.display(description="versions", ordering="_versions")
    def version_count(self, workflow):
        return workflow._versions


@admin.register(WorkflowVersion)
class WorkflowVersionAdmin(ReadOnlyVersionMixin, admin.ModelAdmin):
    list_display = ["__str__", "workflow_link", "number", "short_digest", "published_by", "published_at"]
    list_filter = ["workflow__project__company", "workflow__project", "published_at"]
    search_fields = ["digest", "workflow__slug", "workflow__name", "published_by__username"]
    list_select_related = ["workflow__project__company", "published_by"]
    date_hierarchy = "published_at"
    fields = ["workflow", "number", "digest", "graph", "published_by", "published_at"]
    readonly_fields = fields

    @admin.display(description="workflow", ordering="workflow__slug")
    def workflow_link(self, version):
        url = reverse("admin:workflows_workflow_change", args=[version.workflow_id])
        return format_html('<a href="{}">{}</a>', url, version.workflow.slug)

    @admin.display(description="digest", ordering="digest")
    def short_digest(self, version):
        return version.digest[:19]


@admin.register(WorkflowTemplate)
class WorkflowTemplateAdmin(admin.ModelAdmin):
    """Templates are made from published versions through the API; here they are read or deleted."""

    list_display = ["name", "company", "source_workflow", "source_version", "created_by", "created_at"]
    list_filter = ["company"]
    search_fields = ["name", "description", "company__slug"]
    list_select_related = ["company", "source_workflow", "created_by"]
    fields = ["company", "name", "description", "graph", "source_workflow", "source_version", "created_by",
              "created_at"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    def delete_model(self, request, obj):
        audit(company_id=obj.company_id, kind=WorkflowAuditKind.TEMPLATE_DELETED, user=request.user,
              template_id=obj.pk, name=obj.name, via="admin")
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        for template in queryset:  # one audit event each, as for a single delete
            self.delete_model(request, template)


@admin.register(WorkflowAuditEvent)
class WorkflowAuditEventAdmin(ReadOnlyVersionMixin, admin.ModelAdmin):
    list_display = ["at", "kind", "company", "workflow_id", "template_id", "actor_username"]
    list_filter = ["kind", "company"]
    search_fields = ["actor_username"]
    date_hierarchy = "at"
    fields = ["company", "kind", "workflow_id", "template_id", "data", "actor", "actor_username", "at"]
    readonly_fields = fields
