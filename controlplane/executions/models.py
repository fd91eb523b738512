"""Executions: one run of a workflow version, its step runs per attempt and shard, and its events.

The truth of a run lives here, not in Celery's result backend:

- `Execution` runs on a `Deployment` and pins what it started on: the deployment's version and
  the execution graph built from its artifacts (`graph`, landing adapters included), plus the
  canvas plan compiled from it, so a later apply, rollback or pause never changes a run in flight.
- `StepRun` is one attempt of one shard of one node (or of its compensation). A node's output is
  the output of its succeeded step run(s); tasks read inputs from here, never from return values.
- `ExecutionEvent` is the append-only event store, numbered per execution (unique seq).
- `DeadLetter` keeps what is needed to replay a step whose attempts ran out.
"""
from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from controlplane.core.errors import Conflict
from controlplane.core.immutability import WriteOnceModel

from controlplane.tenancy.models import Company


class ExecutionStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    # Stopped at a gate (an approval): no task of the run is queued or running, and no worker
    # slot or broker message is held; deciding the gate publishes the next segment.
    WAITING = "waiting", "Waiting (for an approval)"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    COMPENSATING = "compensating", "Compensating"
    COMPENSATED = "compensated", "Compensated"
    COMPENSATION_FAILED = "compensation_failed", "Compensation failed"
    CANCELLED = "cancelled", "Cancelled"


TERMINAL_EXECUTION_STATUSES = (
    ExecutionStatus.SUCCEEDED,
    ExecutionStatus.FAILED,
    ExecutionStatus.COMPENSATED,
    ExecutionStatus.COMPENSATION_FAILED,
    ExecutionStatus.CANCELLED,
)


class Trigger(models.TextChoices):
    MANUAL = "manual", "Manual"
    SCHEDULE = "schedule", "Schedule"
    WEBHOOK = "webhook", "Webhook"
    REPLAY = "replay", "Replay"
    WORKFLOW = "workflow", "Workflow (chained)"


class StepStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    SKIPPED = "skipped", "Skipped"
    LOST = "lost", "Lost"
    COMPENSATING = "compensating", "Compensating"
    COMPENSATED = "compensated", "Compensated"
    COMPENSATION_FAILED = "compensation_failed", "Compensation failed"
    CANCELLED = "cancelled", "Cancelled: interrupted by a cancel of its run"


class EventType(models.TextChoices):
    EXECUTION_STARTED = "execution.started"
    EXECUTION_SUCCEEDED = "execution.succeeded"
    EXECUTION_FAILED = "execution.failed"
    EXECUTION_CANCELLED = "execution.cancelled"
    EXECUTION_REDRIVEN = "execution.redriven"
    STEP_STARTED = "step.started"
    STEP_COMPLETED = "step.completed"
    STEP_FAILED = "step.failed"
    STEP_RETRYING = "step.retrying"
    STEP_SKIPPED = "step.skipped"
    STEP_LOST = "step.lost"
    STEP_DEAD_LETTERED = "step.dead_lettered"
    STEP_CANCELLED = "step.cancelled"
    SAGA_COMPENSATING = "saga.compensating"
    STEP_COMPENSATED = "step.compensated"
    SAGA_COMPENSATED = "saga.compensated"
    SAGA_COMPENSATION_FAILED = "saga.compensation_failed"
    # Replays: on the original and on the new run; pre-recorded steps of a replay; dead letters.
    EXECUTION_REPLAYED = "execution.replayed"
    EXECUTION_REPLAY_OF = "execution.replay_of"
    STEP_REUSED = "step.reused"
    STEP_MOCKED = "step.mocked"
    DEAD_LETTER_REPLAYED = "dead_letter.replayed"
    DEAD_LETTER_DISCARDED = "dead_letter.discarded"
    EXECUTION_CONTINUED = "execution.continued"
    # Segments (gates: approval, map): a segment's canvas published, the run stopped at a gate
    # and resumed; an approval asked for, decided (by whom) or expired.
    SEGMENT_DISPATCHED = "segment.dispatched"
    EXECUTION_WAITING = "execution.waiting"
    EXECUTION_RESUMED = "execution.resumed"
    APPROVAL_REQUESTED = "approval.requested"
    APPROVAL_DECIDED = "approval.decided"
    APPROVAL_EXPIRED = "approval.expired"
    # A map node's gate opened: its items (one shard each) as rendered then, and its lanes.
    MAP_EXPANDED = "map.expanded"


class ReplayMode(models.TextChoices):
    EXACT = "exact", "Exact: the same input"
    MODIFIED = "modified", "Modified: another input and/or mocked steps"
    FROM_STEP = "from_step", "From a step: upstream outputs reused"


class DeadLetterStatus(models.TextChoices):
    """Derived from the letter's timestamps (`DeadLetter.status`); `pending` is the open state."""

    PENDING = "pending", "Open: not replayed or discarded"
    REPLAYED = "replayed", "Replayed"
    DISCARDED = "discarded", "Discarded"


class Execution(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False, help_text="Execution id.")
    company = models.ForeignKey(
        Company, on_delete=models.CASCADE, related_name="executions", help_text="The tenant the run belongs to."
    )
    deployment = models.ForeignKey(
        "deployments.Deployment",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="executions",
        help_text="The deployment the run started on (empty only for runs from before deployments existed).",
    )
    environment = models.SlugField(
        max_length=50,
        blank=True,
        default="",
        help_text="The deployment's environment when the run started, e.g. prod.",
    )
    version = models.ForeignKey(
        "workflows.WorkflowVersion",
        on_delete=models.PROTECT,
        related_name="executions",
        help_text="The published version the run is pinned to: the deployment's version when it started.",
    )
    trigger = models.CharField(
        max_length=10, choices=Trigger.choices, default=Trigger.MANUAL, help_text="What started the run."
    )
    input = models.JSONField(default=dict, blank=True, help_text="The trigger's input (a JSON object): `.trigger`.")
    trigger_details = models.JSONField(
        default=dict, blank=True,
        help_text="What fired it: {schedule, scheduled_at} | {hook, delivery} | {upstream_execution, upstream_workflow}.",
    )
    status = models.CharField(
        max_length=20,
        choices=ExecutionStatus.choices,
        default=ExecutionStatus.PENDING,
        db_index=True,
        help_text="running until finish (waiting while stopped at an approval); on a final step failure "
        "compensating, then compensated, compensation_failed, or failed when nothing needed undoing.",
    )
    idempotency_key = models.CharField(
        max_length=200,
        null=True,
        blank=True,
        help_text="Caller's key: the same key in the same company returns the same execution.",
    )
    graph = models.JSONField(
        default=dict,
        help_text="The pinned execution graph, built from the deployment's artifacts: {params, jobs: [...], "
        "edges: [{from, to, branch}], deployment, version}.",
    )
    canvas = models.JSONField(default=dict, blank=True, help_text="The compiled canvas plan (pipelines.canvas).")
    event_seq = models.PositiveIntegerField(default=0, help_text="Sequence number of the last appended event.")
    error = models.JSONField(null=True, blank=True, help_text="Why the run failed: {node_id, shard, error}.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="Who triggered the run (empty for schedules and webhooks).",
    )
    replay_of = models.ForeignKey(
        "self",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="replays",
        help_text="The run this one replays (trigger=replay); its `execution.replayed` event names this run.",
    )
    replay_mode = models.CharField(
        max_length=10, choices=ReplayMode.choices, blank=True, default="",
        help_text="How this replay was made (empty for runs that are not replays).",
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True, help_text="When the run was requested.")
    started_at = models.DateTimeField(null=True, blank=True, help_text="When the run was dispatched.")
    finished_at = models.DateTimeField(null=True, blank=True, help_text="When the run reached a final status.")

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["company", "idempotency_key"],
                condition=models.Q(idempotency_key__isnull=False),
                name="execution_idempotency_key_unique_per_company",
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=[s.value for s in ExecutionStatus]), name="execution_status_is_known"
            ),
        ]

    def __str__(self) -> str:
        return f"execution {self.id} ({self.status})"

    def job(self, node_id: str) -> dict:
        """The pinned job spec of `node_id`."""
        for job in self.graph.get("jobs", []):
            if job["id"] == node_id:
                return job
        raise KeyError(f"execution {self.id} has no job {node_id!r}")


class StepRun(models.Model):
    # No index of its own: `step_run_unique_attempt` starts with it. Every step inserts a row, and
    # each index is one more write per step.
    execution = models.ForeignKey(
        Execution, on_delete=models.CASCADE, related_name="step_runs", db_index=False,
        help_text="The run this attempt belongs to.",
    )
    node_id = models.CharField(max_length=200, help_text="The job (node) id in the execution graph.")
    shard = models.PositiveIntegerField(default=0, help_text="Shard index, 0..shard_count-1.")
    shard_count = models.PositiveIntegerField(default=1, help_text="How many shards the node runs as (replicas).")
    attempt = models.PositiveIntegerField(default=1, help_text="1-based attempt number of this shard.")
    is_compensation = models.BooleanField(
        default=False, help_text="True for a run of the node's `compensate` step during the saga."
    )
    group = models.CharField(max_length=50, help_text="Worker group slug the attempt was routed to.")
    queue = models.CharField(max_length=200, help_text="Celery queue the attempt was delivered on.")
    worker = models.CharField(max_length=255, blank=True, default="", help_text="Hostname of the worker that ran it.")
    task_id = models.CharField(max_length=255, blank=True, default="", help_text="Celery task id (stable across retries).")
    pid = models.PositiveIntegerField(
        null=True, blank=True,
        help_text="Process id that claimed the attempt on its worker (a pool child): if that process is "
                  "gone while the attempt is running, the attempt is lost.",
    )
    status = models.CharField(  # indexed by `step_run_status_worker`, which starts with it
        max_length=20, choices=StepStatus.choices, default=StepStatus.PENDING,
        help_text="running once claimed; succeeded, failed, skipped, or lost when its worker went offline.",
    )
    input = models.JSONField(null=True, blank=True, help_text="The rendered config the step ran with.")
    output = models.JSONField(null=True, blank=True, help_text="The step's JSON output.")
    error = models.JSONField(null=True, blank=True, help_text="{message, retryable, details} of a failure.")
    started_at = models.DateTimeField(null=True, blank=True, help_text="When the attempt was claimed.")
    finished_at = models.DateTimeField(null=True, blank=True, help_text="When the attempt ended.")
    completed_seq = models.PositiveIntegerField(
        null=True, blank=True, help_text="Event seq of its completion: the saga undoes in reverse of this order."
    )
    request = models.JSONField(
        default=dict, blank=True, help_text="The Celery request fields needed to re-publish the task if it is lost."
    )

    class Meta:
        ordering = ["execution_id", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["execution", "node_id", "shard", "attempt", "is_compensation"],
                name="step_run_unique_attempt",
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=[s.value for s in StepStatus]), name="step_run_status_is_known"
            ),
        ]
        indexes = [models.Index(fields=["status", "worker"], name="step_run_status_worker")]

    def __str__(self) -> str:
        kind = " compensation" if self.is_compensation else ""
        return f"{self.node_id}#{self.shard}{kind} attempt {self.attempt} ({self.status})"

    @property
    def duration_ms(self) -> int | None:
        if self.started_at and self.finished_at:
            return int((self.finished_at - self.started_at).total_seconds() * 1000)
        return None


class AppendOnly(Conflict):
    """An event or its history was about to be rewritten."""

    default_code = "append_only"


class ExecutionEvent(WriteOnceModel):
    execution = models.ForeignKey(  # indexed by `execution_event_seq_unique`, which starts with it
        Execution, on_delete=models.CASCADE, related_name="events", db_index=False,
        help_text="The run the event belongs to.",
    )
    seq = models.PositiveIntegerField(help_text="1, 2, 3 ... per execution, in append order.")
    type = models.CharField(max_length=40, choices=EventType.choices, help_text="What happened.")
    data = models.JSONField(default=dict, blank=True, help_text="Details: node, shard, attempt, output, error ...")
    created_at = models.DateTimeField(auto_now_add=True, help_text="When the event was appended.")

    write_once_error = AppendOnly
    write_once_messages = {
        "update": "execution events are append-only",
        "delete": "execution events are append-only",
    }

    class Meta:
        ordering = ["execution_id", "seq"]
        constraints = [models.UniqueConstraint(fields=["execution", "seq"], name="execution_event_seq_unique")]

    def __str__(self) -> str:
        return f"{self.execution_id} #{self.seq} {self.type}"


class DeadLetter(models.Model):
    execution = models.ForeignKey(
        Execution, on_delete=models.CASCADE, related_name="dead_letters", help_text="The run the step belonged to."
    )
    step_run = models.ForeignKey(
        StepRun,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="dead_letters",
        help_text="The last attempt.",
    )
    node_id = models.CharField(max_length=200, help_text="The job (node) id.")
    shard = models.PositiveIntegerField(default=0, help_text="Shard index.")
    attempts = models.PositiveIntegerField(help_text="How many attempts ran.")
    error = models.JSONField(default=dict, help_text="The last attempt's error.")
    payload = models.JSONField(
        default=dict, help_text="Everything needed to replay: job spec, rendered input, context, queue, idempotency key."
    )
    created_at = models.DateTimeField(auto_now_add=True, help_text="When the step was dead-lettered.")
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
        help_text="Who replayed or discarded it last.",
    )
    discarded_at = models.DateTimeField(null=True, blank=True, help_text="When it was discarded, if it was.")
    discard_reason = models.TextField(blank=True, default="", help_text="Why it was discarded (required to discard).")
    replayed_at = models.DateTimeField(null=True, blank=True, help_text="When it was replayed, if it was.")
    replay_execution = models.ForeignKey(
        Execution,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="replayed_dead_letters",
        help_text="The run that carries on after the last replay: a new execution (trigger=replay), or "
        "the letter's own run when it continued in place.",
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"dead letter {self.node_id}#{self.shard} of {self.execution_id}"

    @property
    def status(self) -> str:
        if self.discarded_at is not None:
            return DeadLetterStatus.DISCARDED
        return DeadLetterStatus.REPLAYED if self.replayed_at is not None else DeadLetterStatus.PENDING
