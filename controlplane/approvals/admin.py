"""Admin for approvals: read what was asked and decided (decisions go through the API or the inbox,
which check the approvers and record the step)."""
from django.contrib import admin

from controlplane.approvals.models import Approval


@admin.register(Approval)
class ApprovalAdmin(admin.ModelAdmin):
    list_display = ["id", "node_id", "execution", "company", "status", "deadline", "decided_by", "decided_at"]
    list_filter = ["status", "company"]
    search_fields = ["node_id", "execution__id", "comment"]
    readonly_fields = [f.name for f in Approval._meta.fields]
    ordering = ["-created_at"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
