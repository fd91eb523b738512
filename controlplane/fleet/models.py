"""Fleet: worker groups (one Celery queue each) and the workers that report in by heartbeat.

A `WorkerGroup` of company `acme` with slug `ingest` is served by workers consuming the queue
`wg.acme.ingest`. A `Worker` row is written only by the worker's own heartbeat (see
`workers/bootsteps.py`) and by the offline sweep; its groups are derived from the queues it reports.
"""
from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

from controlplane.tenancy.models import Company, slug_validator

QUEUE_PREFIX = "wg"


def queue_name_for(company_slug: str, group_slug: str) -> str:
    """The Celery queue of a worker group: `wg.<company>.<group>`."""
    return f"{QUEUE_PREFIX}.{company_slug}.{group_slug}"


def parse_queue_name(queue: str) -> tuple[str, str] | None:
    """`wg.acme.ingest` -> ("acme", "ingest"); None for a queue that is not a worker group's."""
    parts = queue.split(".")
    if len(parts) != 3 or parts[0] != QUEUE_PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


def offline_threshold() -> timedelta:
    return timedelta(seconds=float(settings.WORKER_OFFLINE_AFTER_S))


class WorkerGroup(models.Model):
    company = models.ForeignKey(
        Company,
        on_delete=models.CASCADE,
        related_name="worker_groups",
        help_text="The tenant that owns the group; its slug is part of the queue name.",
    )
    slug = models.SlugField(
        max_length=50,
        validators=[slug_validator],
        help_text="Unique within the company; the group's queue is wg.<company>.<slug>.",
    )
    name = models.CharField(max_length=200, blank=True, default="", help_text="Display name.")
    description = models.TextField(blank=True, default="", help_text="What runs on this group's workers.")
    created_at = models.DateTimeField(auto_now_add=True, help_text="When the group was created.")

    class Meta:
        ordering = ["company__slug", "slug"]
        constraints = [
            models.UniqueConstraint(fields=["company", "slug"], name="worker_group_slug_unique_per_company"),
        ]

    def __str__(self) -> str:
        return self.queue_name

    @property
    def queue_name(self) -> str:
        return queue_name_for(self.company.slug, self.slug)


class WorkerStatus(models.TextChoices):
    ONLINE = "online", "Online"
    OFFLINE = "offline", "Offline"
    STOPPED = "stopped", "Stopped"


class WorkerQuerySet(models.QuerySet):
    def live(self, *, now=None) -> "WorkerQuerySet":
        """Online workers whose last heartbeat is fresher than WORKER_OFFLINE_AFTER_S."""
        now = now or timezone.now()
        return self.filter(status=WorkerStatus.ONLINE, last_heartbeat__gt=now - offline_threshold())


class Worker(models.Model):
    hostname = models.CharField(
        max_length=255, unique=True, help_text="Celery node name (e.g. celery@host), unique across the fleet."
    )
    groups = models.ManyToManyField(
        WorkerGroup,
        related_name="workers",
        blank=True,
        help_text="Worker groups whose queues this worker consumes, derived from its reported queues.",
    )
    queues = models.JSONField(default=list, blank=True, help_text="All queue names the worker consumes.")
    concurrency = models.PositiveIntegerField(default=0, help_text="Pool size: tasks it runs at once.")
    pid = models.PositiveIntegerField(null=True, blank=True, help_text="Process id of the worker's main process.")
    software_version = models.CharField(
        max_length=100, blank=True, default="", help_text="Version of the worker software (flowplane/celery)."
    )
    started_at = models.DateTimeField(help_text="When this worker process started (reset when a new process reports under the hostname).")
    last_heartbeat = models.DateTimeField(db_index=True, help_text="When the worker last reported in.")
    status = models.CharField(
        max_length=10,
        choices=WorkerStatus.choices,
        default=WorkerStatus.ONLINE,
        db_index=True,
        help_text="online while heartbeats arrive; offline once they stop (crash, hang); stopped on a clean "
        "shutdown.",
    )
    loaded_artifacts = models.JSONField(
        default=dict, blank=True, help_text="Artifacts the worker holds in its cache: {job_id: digest}."
    )
    active_consumers = models.JSONField(
        default=list,
        blank=True,
        help_text="Queues the worker is actually consuming right now (a cancelled consumer is missing here).",
    )
    step_types = models.JSONField(default=list, blank=True, help_text="Step types the worker can run.")
    pool_pids = models.JSONField(
        default=list, blank=True,
        help_text="Process ids of the processes that run its tasks (pool children; the main process for "
                  "solo and thread pools) at the last heartbeat: an attempt claimed by a pid not among them "
                  "was lost with its process.",
    )

    objects = WorkerQuerySet.as_manager()

    class Meta:
        ordering = ["hostname"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=[s.value for s in WorkerStatus]), name="worker_status_is_known"
            ),
        ]

    def __str__(self) -> str:
        return self.hostname

    def heartbeat_age_s(self, *, now=None) -> float:
        return max(0.0, ((now or timezone.now()) - self.last_heartbeat).total_seconds())

    @property
    def is_live(self) -> bool:
        return self.status == WorkerStatus.ONLINE and self.heartbeat_age_s() < offline_threshold().total_seconds()
