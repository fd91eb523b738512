"""Admin for workflows and their versions. Versions are read-only: no add, change or delete.

Draft graphs and revisions are read-only here too: they change through the API, whose If-Match
keeps concurrent editors from overwriting each other.
"""
from django.contrib import admin
from django.db.models import Count, Max
from django.urls import reverse
from django.utils.html import format_html

from controlplane.workflows.models import Workflow, WorkflowVersion


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
