"""Admin for tenants: companies, their projects and memberships."""
from django.contrib import admin
from django.db.models import Count

from controlplane.tenancy.models import Company, Membership, Project


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]
    fields = ["user", "role", "created_at"]
    readonly_fields = ["created_at"]


class ProjectInline(admin.TabularInline):
    model = Project
    extra = 0
    fields = ["slug", "name", "created_at"]
    readonly_fields = ["created_at"]
    show_change_link = True


@admin.register(Company)
class CompanyAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "member_count", "project_count", "created_at"]
    search_fields = ["slug", "name"]
    date_hierarchy = "created_at"
    readonly_fields = ["created_at"]
    inlines = [MembershipInline, ProjectInline]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(
            _members=Count("memberships", distinct=True), _projects=Count("projects", distinct=True)
        )

    @admin.display(description="members", ordering="_members")
    def member_count(self, company):
        return company._members

    @admin.display(description="projects", ordering="_projects")
    def project_count(self, company):
        return company._projects


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "company", "workflow_count", "created_at"]
    list_filter = ["company"]
    search_fields = ["slug", "name", "company__slug", "company__name"]
    list_select_related = ["company"]
    autocomplete_fields = ["company"]
    readonly_fields = ["created_at"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_workflows=Count("workflows"))

    @admin.display(description="workflows", ordering="_workflows")
    def workflow_count(self, project):
        return project._workflows


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "company", "role", "created_at"]
    list_filter = ["role", "company"]
    search_fields = ["user__username", "user__email", "company__slug", "company__name"]
    list_select_related = ["user", "company"]
    autocomplete_fields = ["user", "company"]
    readonly_fields = ["created_at"]
