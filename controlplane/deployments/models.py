"""Deployments: what a published version looks like once planned onto worker groups, and its history.

    DeploymentPlan      a stored preview (plan JSON + text); apply runs exactly this, once
    Deployment          desired state of (workflow, environment): version, placement, replicas,
                        status and a revision bumped by every apply/pause/resume/undeploy
      JobDeployment     one rendered artifact (stable job id, group, replicas, spec, digest)
      DeploymentEvent   append-only audit with actor (planned, applied, drift_detected, ...)
    Artifact            a rendered job spec by (company, digest), written once by apply: what runs

A plan records the revision of the deployment it was made against (`base_revision`, 0 when there
was none); apply refuses it (409 `stale_plan`) once that revision has moved on. At most one
deployment per (workflow, environment) is active or paused (a conditional unique constraint).
Workers cache artifacts under `artifact_key(deployment_id, job_id)` so that two workflows sharing a
worker group never overwrite each other's job ids.
"""
from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from controlplane.core.errors import Conflict
from controlplane.core.immutability import WriteOnceModel
from controlplane.fleet.models import WorkerGroup
from controlplane.tenancy.models import Company, slug_validator
from controlplane.workflows.models import Workflow, WorkflowVersion


def artifact_key(deployment_id: int, job_id: str) -> str:
    """The key a worker caches an artifact under: `<deployment id>:<job id>` (':' never occurs in job ids)."""
    return f"{deployment_id}:{job_id}"


def parse_artifact_key(key: str) -> tuple[int, str] | None:
    head, sep, job_id = str(key).partition(":")
    if not sep or not head.isdigit():
        return None
    return int(head), job_id


DEFAULT_ENVIRONMENT = "prod"
"""The environment an API call means when it names none (executions by workflow)."""


class DeploymentStatus(models.TextChoices):
    PLANNED = "planned", "Planned"
    APPLYING = "applying", "Applying"
    ACTIVE = "active", "Active"
    FAILED = "failed", "Failed"
    PAUSED = "paused", "Paused"
    UNDEPLOYED = "undeployed", "Undeployed"
    SUPERSEDED = "superseded", "Superseded"


LIVE_STATUSES = (DeploymentStatus.ACTIVE, DeploymentStatus.PAUSED)


class Deployment(models.Model):
    workflow = models.ForeignKey(
        Workflow, on_delete=models.PROTECT, related_name="deployments", help_text="The deployed workflow."
    )
    environment = models.SlugField(
        max_length=50, validators=[slug_validator], help_text="Environment slug, e.g. prod or staging."
    )
    version = models.ForeignKey(
        WorkflowVersion,
        on_delete=models.PROTECT,
        related_name="deployments",
        help_text="The published version whose artifacts are deployed.",
    )
    status = models.CharField(
        max_length=12,
        choices=DeploymentStatus.choices,
        default=DeploymentStatus.PLANNED,
        db_index=True,
        help_text="active runs executions; paused and undeployed refuse them (artifacts unloaded); history is "
        "kept in every status.",
    )
    placement = models.JSONField(default=dict, blank=True, help_text="Placement overrides {job id or alias: group}.")
    replicas = models.JSONField(default=dict, blank=True, help_text="Replica overrides {job id or alias: count}.")
    pinned = models.BooleanField(
        default=False, help_text="Set by rollback: the version is pinned and automatic reconcile pauses until resume."
    )
    auto_reconcile = models.BooleanField(
        default=True, help_text="Whether the periodic reconcile converges this deployment."
    )
    revision = models.PositiveIntegerField(
        default=0, help_text="Bumped on every apply, pause, resume and undeploy; plans record the one they saw."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="Who first applied this deployment.",
    )
    created_at = models.DateTimeField(auto_now_add=True, help_text="When the deployment was first applied.")
    updated_at = models.DateTimeField(auto_now=True, help_text="When the deployment row last changed.")

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["workflow", "environment"],
                condition=models.Q(status__in=["active", "paused"]),
                name="deployment_one_live_per_workflow_environment",
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=[s.value for s in DeploymentStatus]), name="deployment_status_is_known"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.workflow.slug}@{self.environment} v{self.version.number} ({self.status})"

    @property
    def company_id(self) -> int:
        return self.workflow.project.company_id


class DeploymentPlan(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False, help_text="Plan id used to apply it.")
    workflow = models.ForeignKey(
        Workflow, on_delete=models.PROTECT, related_name="deployment_plans", help_text="The planned workflow."
    )
    environment = models.SlugField(max_length=50, validators=[slug_validator], help_text="Target environment.")
    version = models.ForeignKey(
        WorkflowVersion, on_delete=models.PROTECT, related_name="deployment_plans", help_text="The planned version."
    )
    base_revision = models.PositiveIntegerField(
        help_text="Revision of the (workflow, environment) deployment when planned; 0 if there was none."
    )
    placement = models.JSONField(default=dict, blank=True, help_text="Placement overrides the plan used.")
    replicas = models.JSONField(default=dict, blank=True, help_text="Replica overrides the plan used.")
    plan = models.JSONField(help_text="The plan as `pipelines.plan_format.plan_to_json`: jobs, changes, errors.")
    text = models.TextField(help_text="The plan as Terraform-like text.")
    summary = models.CharField(max_length=200, help_text="'3 to create, 1 to update, 0 to delete, 1 move'.")
    has_errors = models.BooleanField(default=False, help_text="A plan with errors cannot be applied.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="Who made the plan.",
    )
    created_at = models.DateTimeField(auto_now_add=True, help_text="When the plan was made.")
    applied_at = models.DateTimeField(null=True, blank=True, help_text="When it was applied; a plan applies once.")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"plan {self.id} ({self.summary})"


class JobDeploymentStatus(models.TextChoices):
    STAGED = "staged", "Staged"
    DEPLOYED = "deployed", "Deployed"
    UNLOADED = "unloaded", "Unloaded"


class JobDeployment(models.Model):
    deployment = models.ForeignKey(
        Deployment, on_delete=models.CASCADE, related_name="jobs", help_text="The deployment this artifact belongs to."
    )
    job_id = models.CharField(max_length=300, help_text="Stable job id (blueprint jobs: alias/inner).")
    kind = models.CharField(max_length=20, help_text="step, landing_write or landing_read.")
    type = models.CharField(max_length=64, help_text="Step type the job runs.")
    group = models.ForeignKey(
        WorkerGroup,
        on_delete=models.PROTECT,
        related_name="job_deployments",
        help_text="The worker group whose workers hold and run this artifact.",
    )
    replicas = models.PositiveIntegerField(default=1, help_text="Parallel shards of the job.")
    spec = models.JSONField(help_text="The rendered artifact; secrets stay {\"$secret\": name} references.")
    digest = models.CharField(
        max_length=80, help_text="sha256 of the spec as applied; a spec that no longer matches was edited by hand."
    )
    status = models.CharField(
        max_length=10,
        choices=JobDeploymentStatus.choices,
        default=JobDeploymentStatus.STAGED,
        help_text="staged when written, deployed once the group's workers acknowledged it, unloaded when paused.",
    )
    updated_at = models.DateTimeField(auto_now=True, help_text="When the row last changed.")

    class Meta:
        ordering = ["deployment_id", "job_id"]
        constraints = [models.UniqueConstraint(fields=["deployment", "job_id"], name="job_deployment_unique_job")]

    def __str__(self) -> str:
        return f"{self.job_id} on {self.group.slug}"

    @property
    def artifact_key(self) -> str:
        return artifact_key(self.deployment_id, self.job_id)


class EventKind(models.TextChoices):
    PLANNED = "planned", "Planned"
    APPLYING = "applying", "Applying"
    JOB_STAGED = "job_staged", "Job staged"
    JOB_DEPLOYED = "job_deployed", "Job deployed"
    APPLIED = "applied", "Applied"
    WARNING = "warning", "Warning"
    FAILED = "failed", "Failed"
    DRIFT_DETECTED = "drift_detected", "Drift detected"
    RECONCILED = "reconciled", "Reconciled"
    DRIFT_ACCEPTED = "drift_accepted", "Drift accepted"
    ROLLED_BACK = "rolled_back", "Rolled back"
    PAUSED = "paused", "Paused"
    RESUMED = "resumed", "Resumed"
    UNDEPLOYED = "undeployed", "Undeployed"


class EventImmutable(Conflict):
    """A deployment event was about to be changed or deleted."""

    default_code = "event_immutable"


class DeploymentEvent(WriteOnceModel):
    deployment = models.ForeignKey(
        Deployment,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="events",
        help_text="The deployment, once one exists (a first plan has none yet).",
    )
    workflow = models.ForeignKey(
        Workflow, on_delete=models.PROTECT, related_name="deployment_events", help_text="The workflow concerned."
    )
    environment = models.SlugField(max_length=50, help_text="The environment concerned.")
    kind = models.CharField(max_length=20, choices=EventKind.choices, db_index=True, help_text="What happened.")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="Who did it; empty for the periodic reconcile and worker replies.",
    )
    data = models.JSONField(default=dict, blank=True, help_text="Details: plan id, job id, drift, worker replies.")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True, help_text="When it happened.")

    write_once_error = EventImmutable
    write_once_messages = {
        "update": "deployment events are append-only",
        "delete": "deployment events are append-only and never deleted",
    }

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.kind} {self.workflow_id}@{self.environment}"


class ArtifactImmutable(Conflict):
    """A stored artifact was about to be changed or deleted."""

    default_code = "artifact_immutable"


class Artifact(WriteOnceModel):
    """One rendered job spec, content-addressed and written once (like a published version).

    Apply and rollback store every job they render here (the same spec is the same row), so the
    spec a run was pinned to can be found again after the next apply overwrote the JobDeployment.
    Workers run steps from these rows (`controlplane.deployments.artifacts`), re-checking the
    digest of what they read.
    """

    company = models.ForeignKey(
        Company, on_delete=models.PROTECT, related_name="artifacts", help_text="The tenant whose deployment rendered it."
    )
    digest = models.CharField(
        max_length=80, help_text="`pipelines.planner.spec_digest` of the spec: sha256 of its canonical JSON."
    )
    spec = models.JSONField(help_text="The rendered job artifact; secrets stay {\"$secret\": name} references.")
    created_at = models.DateTimeField(auto_now_add=True, help_text="When an apply first stored it.")

    write_once_error = ArtifactImmutable
    write_once_messages = {
        "update": "artifacts are immutable; apply a new spec (it gets its own digest)",
        "delete": "artifacts are immutable and never deleted: a run may still be pinned to one",
    }

    class Meta:
        ordering = ["company_id", "digest"]
        constraints = [models.UniqueConstraint(fields=["company", "digest"], name="artifact_unique_company_digest")]

    def __str__(self) -> str:
        return f"{self.digest[:19]} ({self.company_id})"
