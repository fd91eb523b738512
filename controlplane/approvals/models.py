"""An approval: one approval step of one run, asked of people and decided once.

Created by the gate handler when the run's segment reaches the node (unique per run and node,
so a duplicate advance creates none); decided through the API or the inbox (approve, reject),
expired by the sweep past its deadline, cancelled when its run ended otherwise.
"""
from __future__ import annotations

from django.conf import settings
from django.db import models

from controlplane.tenancy.models import Company


class ApprovalStatus(models.TextChoices):
    PENDING = "pending", "Pending: waiting for a decision"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    EXPIRED = "expired", "Expired: nobody decided before the deadline"
    CANCELLED = "cancelled", "Cancelled: the run ended without a decision"


class Decision(models.TextChoices):
    APPROVE = "approve", "Approve"
    REJECT = "reject", "Reject"


class Approval(models.Model):
    company = models.ForeignKey(Company, on_delete=models.CASCADE, related_name="approvals",
                                help_text="The tenant of the run (approvers are its members).")
    execution = models.ForeignKey("executions.Execution", on_delete=models.CASCADE, related_name="approvals",
                                  help_text="The waiting run.")
    node_id = models.CharField(max_length=200, help_text="The approval step's node id in the run's graph.")
    status = models.CharField(max_length=10, choices=ApprovalStatus.choices, default=ApprovalStatus.PENDING,
                              help_text="pending until approved, rejected, expired or cancelled.")
    prompt = models.TextField(blank=True, default="", help_text="What the approvers are asked (rendered).")
    approvers = models.JSONField(default=dict, blank=True,
                                 help_text="Who may decide: {roles: [...], users: [...]} of the company.")
    four_eyes = models.BooleanField(default=False, help_text="The run's requester may not decide.")
    input_schema = models.JSONField(null=True, blank=True, help_text="JSON Schema of the decision's input.")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                     related_name="+", help_text="Who started the run (empty for schedules, hooks).")
    deadline = models.DateTimeField(help_text="When the approval expires and the step fails.")
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                   related_name="+", help_text="Who approved or rejected it.")
    decided_at = models.DateTimeField(null=True, blank=True, help_text="When it was decided, expired or cancelled.")
    comment = models.TextField(blank=True, default="", help_text="The decider's comment.")
    input = models.JSONField(null=True, blank=True, help_text="The decision's input: the step's output.")
    created_at = models.DateTimeField(auto_now_add=True, help_text="When the run reached the approval.")

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["execution", "node_id"], name="approval_unique_per_run_and_node"),
            models.CheckConstraint(condition=models.Q(status__in=[s.value for s in ApprovalStatus]),
                                   name="approval_status_is_known"),
        ]
        # The sweep's query: pending ones past their deadline.
        indexes = [models.Index(fields=["status", "deadline"], name="approval_status_deadline")]

    def __str__(self) -> str:
        return f"approval {self.node_id} of {self.execution_id} ({self.status})"
