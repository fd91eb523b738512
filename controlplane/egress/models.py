"""Egress allow-lists: what a company's steps may connect to beyond the public internet.

    EgressRule (company, entry)          one allow-list entry: a CIDR, a host, host:port
    EgressAuditEvent                     append-only: who created, changed or deleted a rule, when

By default a step may connect only to public addresses (``pipelines.egress``); a rule opens
exactly what it names. The deployment-wide ``EGRESS_ALLOW`` setting adds entries for every company.
"""
from __future__ import annotations

from django.conf import settings
from django.db import models

from controlplane.core.errors import Conflict
from controlplane.core.immutability import WriteOnceModel
from controlplane.tenancy.models import Company


class EgressRule(models.Model):
    company = models.ForeignKey(
        Company, on_delete=models.CASCADE, related_name="egress_rules",
        help_text="The tenant the rule opens egress for."
    )
    entry = models.CharField(
        max_length=300,
        help_text="A CIDR (10.0.0.0/8), an address or host with an optional port (api.internal:8443); stored "
        "in canonical form.",
    )
    description = models.CharField(max_length=500, blank=True, default="", help_text="Why this is opened.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
        help_text="Who created the rule.",
    )
    created_at = models.DateTimeField(auto_now_add=True, help_text="When the rule was created.")
    updated_at = models.DateTimeField(auto_now=True, help_text="When the rule last changed.")

    class Meta:
        ordering = ["company_id", "entry"]
        constraints = [models.UniqueConstraint(fields=["company", "entry"], name="egress_rule_entry_unique")]

    def __str__(self) -> str:
        return f"{self.entry} ({self.company_id})"


class EgressAuditAction(models.TextChoices):
    CREATED = "created", "Created"
    UPDATED = "updated", "Updated"
    DELETED = "deleted", "Deleted"


class AuditAppendOnly(Conflict):
    """An egress audit event was about to be rewritten."""

    default_code = "append_only"


class EgressAuditEvent(WriteOnceModel):
    """One change of a company's allow-list; kept after the rule itself is deleted."""

    company = models.ForeignKey(
        Company, on_delete=models.CASCADE, related_name="egress_audit_events", help_text="Whose allow-list changed."
    )
    rule_id = models.BigIntegerField(help_text="The rule changed (its id; the rule may since be deleted).")
    action = models.CharField(max_length=10, choices=EgressAuditAction.choices, help_text="What was done.")
    before = models.JSONField(
        null=True, blank=True, help_text="{entry, description} before the change; null on create."
    )
    after = models.JSONField(null=True, blank=True, help_text="{entry, description} after the change; null on delete.")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
        help_text="Who made the change.",
    )
    actor_username = models.CharField(
        max_length=150, blank=True, default="", help_text="The actor's username when the change was made."
    )
    via = models.CharField(max_length=10, help_text="Where the change was made: api or admin.")
    at = models.DateTimeField(auto_now_add=True, db_index=True, help_text="When the change was made.")

    write_once_error = AuditAppendOnly
    write_once_messages = {
        "update": "egress audit events are append-only",
        "delete": "egress audit events are append-only",
    }

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["company", "-at"], name="egress_audit_company_at")]

    def __str__(self) -> str:
        return f"{self.action} rule {self.rule_id} by {self.actor_username or '?'}"
