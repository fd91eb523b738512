"""Admin for runs: executions with their events (read-only), step runs and dead letters."""
from django.contrib import admin

from controlplane.executions.models import DeadLetter, Execution, ExecutionEvent, StepRun


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class EventInline(ReadOnlyInline):
    model = ExecutionEvent
    fields = readonly_fields = ["seq", "type", "data", "created_at"]
    ordering = ["seq"]


class StepRunInline(ReadOnlyInline):
    model = StepRun
    fields = readonly_fields = ["node_id", "shard", "attempt", "is_compensation", "status", "group", "worker",
                                "started_at", "finished_at"]
    show_change_link = True


@admin.register(Execution)
class ExecutionAdmin(admin.ModelAdmin):
    list_display = ["id", "company", "deployment", "environment", "version", "trigger", "status", "created_at",
                    "finished_at"]
    list_filter = ["status", "trigger", "environment", "company"]
    search_fields = ["id", "idempotency_key"]
    readonly_fields = ["id", "company", "deployment", "environment", "version", "trigger", "input", "idempotency_key", "graph", "canvas",
                       "event_seq", "error", "created_by", "created_at", "started_at", "finished_at", "status"]
    inlines = [StepRunInline, EventInline]

    def has_add_permission(self, request):
        return False


@admin.register(StepRun)
class StepRunAdmin(admin.ModelAdmin):
    list_display = ["execution", "node_id", "shard", "attempt", "is_compensation", "status", "group", "worker",
                    "started_at", "finished_at"]
    list_filter = ["status", "is_compensation", "group"]
    search_fields = ["execution__id", "node_id", "worker", "task_id"]
    readonly_fields = [f.name for f in StepRun._meta.fields]

    def has_add_permission(self, request):
        return False


@admin.register(DeadLetter)
class DeadLetterAdmin(admin.ModelAdmin):
    list_display = ["execution", "node_id", "shard", "attempts", "created_at", "replayed_at"]
    search_fields = ["execution__id", "node_id"]
    readonly_fields = ["execution", "step_run", "node_id", "shard", "attempts", "error", "payload", "created_at",
                       "replayed_at", "replay_execution"]

    def has_add_permission(self, request):
        return False
