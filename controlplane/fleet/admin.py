"""Admin for the fleet: groups with their queue and live capacity, workers with heartbeat age."""
from __future__ import annotations

from django.contrib import admin
from django.utils import timezone

from controlplane.fleet.models import Worker, WorkerGroup, WorkerStatus, offline_threshold
from controlplane.fleet.selectors import groups_with_capacity


class LivenessFilter(admin.SimpleListFilter):
    title = "liveness"
    parameter_name = "live"

    def lookups(self, request, model_admin):
        return [("yes", "Live"), ("no", "Not live (offline, stopped or stale)")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.live()
        if self.value() == "no":
            return queryset.exclude(pk__in=Worker.objects.live().values("pk"))
        return queryset


@admin.register(WorkerGroup)
class WorkerGroupAdmin(admin.ModelAdmin):
    list_display = ["slug", "company", "queue", "live_workers", "live_concurrency", "created_at"]
    list_filter = ["company"]
    search_fields = ["slug", "name", "company__slug"]
    list_select_related = ["company"]
    readonly_fields = ["queue", "created_at"]

    def get_queryset(self, request):
        return groups_with_capacity(super().get_queryset(request))

    @admin.display(description="queue")
    def queue(self, group):
        return group.queue_name

    @admin.display(description="live workers", ordering="live_workers_count")
    def live_workers(self, group):
        return group.live_workers_count

    @admin.display(description="live concurrency", ordering="live_concurrency")
    def live_concurrency(self, group):
        return group.live_concurrency or 0


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    list_display = ["hostname", "status", "is_live", "heartbeat_age", "concurrency", "group_queues", "software_version"]
    list_filter = ["status", LivenessFilter, "groups__company", "groups"]
    search_fields = ["hostname", "groups__slug", "groups__company__slug"]
    ordering = ["hostname"]
    readonly_fields = [
        "hostname", "groups", "queues", "active_consumers", "concurrency", "pid", "software_version", "started_at",
        "last_heartbeat", "loaded_artifacts", "step_types",
    ]

    def has_add_permission(self, request):
        return False  # workers register themselves by heartbeat

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("groups__company")

    @admin.display(description="live", boolean=True)
    def is_live(self, worker):
        return worker.is_live

    @admin.display(description="heartbeat age", ordering="-last_heartbeat")
    def heartbeat_age(self, worker):
        age = worker.heartbeat_age_s(now=timezone.now())
        stale = " (stale)" if age >= offline_threshold().total_seconds() and worker.status == WorkerStatus.ONLINE else ""
        return f"{age:.1f}s{stale}"

    @admin.display(description="groups")
    def group_queues(self, worker):
        return ", ".join(group.queue_name for group in worker.groups.all()) or "-"
