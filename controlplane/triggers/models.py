"""Triggers: what starts runs of a deployment besides an API call.

    Schedule        one `schedules` entry of the deployed version, registered as a django-celery-beat
                    PeriodicTask (enabled while the deployment is active); rows of a deployment
                    that no longer declares them are deleted on apply
      ScheduleFire  one tick of a schedule and what became of it (started, skipped, buffered ...);
                    unique per (schedule, scheduled time), so a tick beat sends twice starts one run,
                    and at most one buffered fire per schedule (buffer_one)
    Hook            a webhook endpoint of a deployment: `POST /api/v1/hooks/{token}`, HMAC secrets
                    stored encrypted (two during rotation), optional GitHub branch filter
      HookDelivery  one accepted delivery, unique per (hook, delivery id): a redelivery starts no run
    ChainTrigger    an `on: {workflow, status}` of the deployed version: runs of `upstream` start
                    runs of `deployment` when they end in a matching status
      ChainRun      one (upstream run, downstream deployment) pair, unique: each is started once;
                    a start refused for a passing reason (no live worker) is tried again by the
                    sweep with backoff, a bounded number of times, each try recorded
"""
from __future__ import annotations

from django.conf import settings
from django.db import models

from controlplane.deployments.models import Deployment
from controlplane.executions.models import Execution
from controlplane.workflows.models import Workflow


class OverlapPolicy(models.TextChoices):
    SKIP = "skip", "Skip while a run of the schedule is running"
    BUFFER_ONE = "buffer_one", "Buffer one run to start when the current one ends"
    ALLOW_ALL = "allow_all", "Start every tick"


class Schedule(models.Model):
    deployment = models.ForeignKey(
        Deployment, on_delete=models.CASCADE, related_name="schedules", help_text="The deployment whose runs it starts."
    )
    name = models.SlugField(max_length=64, help_text="The schedule's name in the graph document.")
    cron = models.CharField(max_length=120, blank=True, default="", help_text="Five-field cron, empty for an interval.")
    every_s = models.PositiveIntegerField(null=True, blank=True, help_text="Interval in seconds, when not cron.")
    timezone = models.CharField(max_length=64, default="UTC", help_text="IANA zone the cron is read in.")
    overlap = models.CharField(
        max_length=12, choices=OverlapPolicy.choices, default=OverlapPolicy.SKIP,
        help_text="What a tick does while a run of this schedule is still running.",
    )
    catchup_window_s = models.PositiveIntegerField(
        default=0, help_text="Missed ticks at most this old still fire after an outage (0: none)."
    )
    input = models.JSONField(default=dict, blank=True, help_text="The input of every run it starts.")
    periodic_task = models.OneToOneField(
        "django_celery_beat.PeriodicTask", on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
        help_text="The beat entry that fires it (`flowplane.schedule_fire`).",
    )
    last_tick_at = models.DateTimeField(null=True, blank=True, help_text="Scheduled time of the latest tick handled.")
    created_at = models.DateTimeField(auto_now_add=True, help_text="When apply registered it.")
    updated_at = models.DateTimeField(auto_now=True, help_text="When the row last changed.")

    class Meta:
        ordering = ["deployment_id", "name"]
        constraints = [models.UniqueConstraint(fields=["deployment", "name"], name="schedule_unique_name")]

    def __str__(self) -> str:
        return f"schedule {self.name} of deployment {self.deployment_id}"

    @property
    def task_name(self) -> str:
        """The PeriodicTask's unique name."""
        return f"flowplane.schedule:{self.deployment_id}:{self.name}"


class FireStatus(models.TextChoices):
    STARTED = "started", "Started a run"
    SKIPPED = "skipped", "Skipped: a run was still running (or the buffer was full)"
    BUFFERED = "buffered", "Buffered: starts when the running run ends"
    REFUSED = "refused", "Refused: the deployment did not accept runs"


class ScheduleFire(models.Model):
    schedule = models.ForeignKey(Schedule, on_delete=models.CASCADE, related_name="fires", help_text="The schedule.")
    scheduled_at = models.DateTimeField(help_text="The tick this fire belongs to.")
    status = models.CharField(max_length=10, choices=FireStatus.choices, help_text="What the tick did.")
    execution = models.ForeignKey(
        Execution, on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
        help_text="The run it started, if it did.",
    )
    reason = models.CharField(max_length=200, blank=True, default="", help_text="Why it was skipped or refused.")
    created_at = models.DateTimeField(auto_now_add=True, help_text="When the tick was handled.")
    updated_at = models.DateTimeField(auto_now=True, help_text="When the row last changed (a buffered fire starting).")

    class Meta:
        ordering = ["schedule_id", "scheduled_at"]
        constraints = [
            models.UniqueConstraint(fields=["schedule", "scheduled_at"], name="schedule_fire_unique_tick"),
            models.UniqueConstraint(fields=["schedule"], condition=models.Q(status="buffered"),
                                    name="schedule_fire_one_buffered"),
        ]

    def __str__(self) -> str:
        return f"{self.schedule_id} @ {self.scheduled_at:%Y-%m-%d %H:%M:%S} {self.status}"


class Hook(models.Model):
    deployment = models.ForeignKey(
        Deployment, on_delete=models.CASCADE, related_name="hooks", help_text="The deployment whose runs it starts."
    )
    token = models.CharField(max_length=64, unique=True, help_text="The URL's secret-free id: /api/v1/hooks/{token}.")
    name = models.CharField(max_length=100, blank=True, default="", help_text="What the hook is for.")
    secret = models.TextField(help_text="The signing secret, encrypted (controlplane.catalog.crypto).")
    previous_secret = models.TextField(
        blank=True, default="", help_text="The secret before the last rotation, encrypted; valid until cleared."
    )
    branch = models.CharField(
        max_length=200, blank=True, default="",
        help_text="GitHub push deliveries start a run only for this branch (refs/heads/<branch>); empty: any.",
    )
    enabled = models.BooleanField(default=True, help_text="A disabled hook answers 404.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", help_text="Who made it."
    )
    created_at = models.DateTimeField(auto_now_add=True, help_text="When it was made.")
    rotated_at = models.DateTimeField(null=True, blank=True, help_text="When the secret was last rotated.")

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"hook {self.pk} of deployment {self.deployment_id}"


class HookDelivery(models.Model):
    hook = models.ForeignKey(Hook, on_delete=models.CASCADE, related_name="deliveries", help_text="The hook.")
    delivery_id = models.CharField(max_length=200, help_text="The sender's delivery id (X-Flowplane-Delivery, X-GitHub-Delivery).")
    execution = models.ForeignKey(
        Execution, on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
        help_text="The run the delivery started (none when a branch filter ignored it).",
    )
    ignored = models.CharField(max_length=200, blank=True, default="", help_text="Why no run started, if none did.")
    created_at = models.DateTimeField(auto_now_add=True, help_text="When it was accepted.")

    class Meta:
        ordering = ["-id"]
        constraints = [models.UniqueConstraint(fields=["hook", "delivery_id"], name="hook_delivery_unique")]


class ChainStatus(models.TextChoices):
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed (also compensated)"
    ANY = "any", "Succeeded or failed"


class ChainTrigger(models.Model):
    deployment = models.ForeignKey(
        Deployment, on_delete=models.CASCADE, related_name="chain_triggers", help_text="The downstream deployment."
    )
    upstream = models.ForeignKey(
        Workflow, on_delete=models.CASCADE, related_name="+", help_text="The workflow whose runs trigger it."
    )
    status = models.CharField(max_length=10, choices=ChainStatus.choices, help_text="Which ends of upstream runs fire.")
    created_at = models.DateTimeField(
        auto_now_add=True, help_text="Only upstream runs that finish after this start downstream runs."
    )

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["deployment", "upstream", "status"], name="chain_trigger_unique")]


class ChainRun(models.Model):
    upstream = models.ForeignKey(
        Execution, on_delete=models.CASCADE, related_name="+", help_text="The finished upstream run."
    )
    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="+", help_text="Downstream.")
    execution = models.ForeignKey(
        Execution, on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
        help_text="The downstream run it started.",
    )
    error = models.JSONField(null=True, blank=True, help_text="Why the downstream run could not start, if it could not.")
    tries = models.JSONField(
        default=list, blank=True,
        help_text="Each try that could not start the downstream run, oldest first: {at, error}.",
    )
    next_try_at = models.DateTimeField(
        null=True, blank=True,
        help_text="When the triggers sweep tries again (a transient refusal such as no live worker); empty once "
                  "the run started, after a refusal that a retry cannot mend, or when the tries ran out.",
    )
    created_at = models.DateTimeField(auto_now_add=True, help_text="When it was handled.")

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["upstream", "deployment"], name="chain_run_unique")]
        indexes = [models.Index(fields=["next_try_at"], condition=models.Q(next_try_at__isnull=False),
                                name="chain_run_retry_due")]
