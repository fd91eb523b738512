"""API shapes of the fleet app."""
from __future__ import annotations

from django.utils import timezone
from rest_framework import serializers

from controlplane.fleet import hooks
from controlplane.fleet.models import Worker, WorkerGroup, parse_queue_name
from controlplane.tenancy.models import slug_validator


class WorkerGroupInSerializer(serializers.Serializer):
    company = serializers.IntegerField(help_text="Id of the company that owns the group.")
    slug = serializers.CharField(
        max_length=50, validators=[slug_validator], help_text="Unique in the company; the queue is wg.<company>.<slug>."
    )
    name = serializers.CharField(max_length=200, required=False, default="", allow_blank=True)
    description = serializers.CharField(required=False, default="", allow_blank=True)


class WorkerGroupOutSerializer(serializers.ModelSerializer):
    company_slug = serializers.CharField(source="company.slug", read_only=True)
    queue = serializers.CharField(source="queue_name", read_only=True, help_text="The group's Celery queue.")
    live_workers = serializers.SerializerMethodField(help_text="Online workers with a fresh heartbeat.")
    concurrency = serializers.SerializerMethodField(help_text="Sum of the live workers' pool sizes.")

    class Meta:
        model = WorkerGroup
        fields = [
            "id", "company", "company_slug", "slug", "name", "description", "queue", "live_workers", "concurrency",
            "created_at",
        ]

    def get_live_workers(self, group) -> int:
        return int(getattr(group, "live_workers_count", 0) or 0)

    def get_concurrency(self, group) -> int:
        return int(getattr(group, "live_concurrency", 0) or 0)


class WorkerGroupRefSerializer(serializers.ModelSerializer):
    queue = serializers.CharField(source="queue_name", read_only=True)

    class Meta:
        model = WorkerGroup
        fields = ["id", "slug", "queue"]


class WorkerOutSerializer(serializers.ModelSerializer):
    """A worker as a member of the caller's companies sees it.

    Groups and queues of other tenants that the same worker may serve are left out.
    """

    groups = serializers.SerializerMethodField(help_text="The caller's groups this worker serves.")
    live = serializers.SerializerMethodField(help_text="Online with a heartbeat fresher than the offline threshold.")
    heartbeat_age_s = serializers.SerializerMethodField(help_text="Seconds since the last heartbeat.")
    queues = serializers.SerializerMethodField()
    active_consumers = serializers.SerializerMethodField()
    loaded_artifacts = serializers.SerializerMethodField(
        help_text="{artifact key: digest} of the caller's companies' deployments held by this worker."
    )

    class Meta:
        model = Worker
        fields = [
            "id", "hostname", "groups", "status", "live", "heartbeat_age_s", "last_heartbeat", "started_at",
            "concurrency", "queues", "active_consumers", "loaded_artifacts", "step_types", "pid", "software_version",
        ]

    def _visible_companies(self) -> set[str]:
        return set(self.context.get("company_slugs", ()))

    def _visible_queues(self, queues) -> list[str]:
        companies = self._visible_companies()
        out = []
        for queue in queues or []:
            parsed = parse_queue_name(queue)
            if parsed is None or parsed[0] in companies:
                out.append(queue)
        return out

    def get_groups(self, worker) -> list[dict]:
        groups = getattr(worker, "visible_groups", None)
        if groups is None:
            companies = self._visible_companies()
            groups = [g for g in worker.groups.select_related("company") if g.company.slug in companies]
        return WorkerGroupRefSerializer(groups, many=True).data

    def get_live(self, worker) -> bool:
        return worker.is_live

    def get_heartbeat_age_s(self, worker) -> float:
        return round(worker.heartbeat_age_s(now=self.context.get("now") or timezone.now()), 3)

    def get_queues(self, worker) -> list[str]:
        return self._visible_queues(worker.queues)

    def get_active_consumers(self, worker) -> list[str]:
        return self._visible_queues(worker.active_consumers)

    def get_loaded_artifacts(self, worker) -> dict[str, str]:
        return hooks.visible_artifacts(worker.loaded_artifacts, set(self.context.get("company_ids", ())))
