"""Catalog: reusable blueprints (immutable versions), job templates, and encrypted secrets.

    Blueprint (company, name)            a named, reusable sub-graph with ports and params
      BlueprintVersion (number 1..n)     its published documents; immutable once written
    JobTemplate (company, name)          a step type with default config and a param schema
    Secret (company, name)               a value encrypted at rest; only `secret_resolve` reads it

Graphs refer to these by name: `blueprint: "name@3"`, `template: "name"`, `{"$secret": "name"}`.

Versions are append-only like workflow versions: `save()` refuses to rewrite a row, `delete()` and
bulk QuerySet writes refuse, the blueprint foreign key is PROTECT, and migration 0002 adds database
triggers (PostgreSQL: UPDATE and DELETE; SQLite: UPDATE) so raw SQL cannot rewrite history either.
"""
from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models

from controlplane.core.errors import Conflict
from controlplane.core.immutability import WriteOnceModel
from controlplane.tenancy.models import Company

blueprint_name_validator = RegexValidator(
    r"^[a-z0-9](?:[a-z0-9_-]{0,98}[a-z0-9])?$",
    "use 1-100 lowercase letters, digits, '_' and inner '-' (graphs refer to it as name@version)",
)
template_name_validator = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$",
    "use 1-100 letters, digits, '_', '.' and '-', starting with a letter or digit",
)
secret_name_validator = RegexValidator(
    r"^[A-Za-z0-9_.-]{1,200}$",
    "use 1-200 letters, digits, '_', '.' and '-' (graphs refer to it as {\"$secret\": name})",
)
step_type_validator = RegexValidator(r"^[a-z][a-z0-9_.-]{0,63}$", "a registered step type name, e.g. 'http'")


class BlueprintVersionImmutable(Conflict):
    """A published blueprint version was about to be changed or deleted."""

    default_code = "version_immutable"


class Blueprint(models.Model):
    company = models.ForeignKey(
        Company, on_delete=models.CASCADE, related_name="blueprints", help_text="The tenant that owns the blueprint."
    )
    name = models.CharField(
        max_length=100,
        validators=[blueprint_name_validator],
        help_text="Unique within the company; graphs use it as `blueprint: name@version`.",
    )
    description = models.TextField(blank=True, default="", help_text="What the sub-graph does and how to wire it.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="Who created the blueprint.",
    )
    created_at = models.DateTimeField(auto_now_add=True, help_text="When the blueprint was created.")

    class Meta:
        ordering = ["company__slug", "name"]
        constraints = [models.UniqueConstraint(fields=["company", "name"], name="blueprint_name_unique_per_company")]

    def __str__(self) -> str:
        return self.name


class BlueprintVersion(WriteOnceModel):
    blueprint = models.ForeignKey(
        Blueprint,
        on_delete=models.PROTECT,
        related_name="versions",
        help_text="The blueprint this version belongs to; a blueprint with versions cannot be deleted.",
    )
    number = models.PositiveIntegerField(help_text="1 for the first publish, then 2, 3, ...; never reused.")
    document = models.JSONField(
        help_text="The published sub-graph: {params, inputs, outputs, nodes, edges}. Never changes."
    )
    digest = models.CharField(
        max_length=80, help_text="sha256 of the canonical document; equal digests mean the same blueprint."
    )
    published_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,  # SET_NULL would rewrite the row, which the trigger refuses
        null=True,
        blank=True,
        related_name="+",
        help_text="Who published this version (empty when published by the system).",
    )
    published_at = models.DateTimeField(auto_now_add=True, help_text="When this version was published.")

    write_once_error = BlueprintVersionImmutable
    write_once_messages = {
        "update": "blueprint versions are immutable; publish a new version instead",
        "delete": "blueprint versions are immutable and are never deleted",
    }

    class Meta:
        ordering = ["blueprint_id", "number"]
        get_latest_by = "number"
        constraints = [
            models.UniqueConstraint(fields=["blueprint", "number"], name="blueprint_version_number_unique"),
            models.CheckConstraint(condition=models.Q(number__gte=1), name="blueprint_version_number_positive"),
        ]

    def __str__(self) -> str:
        return self.ref

    @property
    def ref(self) -> str:
        """How graphs refer to this version: `name@number`."""
        return f"{self.blueprint.name}@{self.number}"


class JobTemplate(models.Model):
    company = models.ForeignKey(
        Company,
        on_delete=models.CASCADE,
        related_name="job_templates",
        help_text="The tenant that owns the template.",
    )
    name = models.CharField(
        max_length=100,
        validators=[template_name_validator],
        help_text="Unique within the company; graph nodes use it as `template: name`.",
    )
    step_type = models.CharField(
        max_length=64, validators=[step_type_validator], help_text="The step type the template configures."
    )
    defaults = models.JSONField(
        default=dict, blank=True, help_text="Default config; a node's own config is deep-merged over it."
    )
    param_schema = models.JSONField(
        default=dict,
        blank=True,
        help_text="Params a node may pass: {name: {type?, required?, default?}}; defaults may use "
        "{{ .params.<name> }}.",
    )
    description = models.TextField(blank=True, default="", help_text="What the template is for.")
    created_at = models.DateTimeField(auto_now_add=True, help_text="When the template was created.")
    updated_at = models.DateTimeField(auto_now=True, help_text="When the template last changed.")

    class Meta:
        ordering = ["company__slug", "name"]
        constraints = [
            models.UniqueConstraint(fields=["company", "name"], name="job_template_name_unique_per_company")
        ]

    def __str__(self) -> str:
        return self.name


class Secret(models.Model):
    """A named value encrypted at rest. Nothing here ever shows the value, not even `repr`."""

    company = models.ForeignKey(
        Company, on_delete=models.CASCADE, related_name="secrets", help_text="The tenant that owns the secret."
    )
    name = models.CharField(
        max_length=200,
        validators=[secret_name_validator],
        help_text="Unique within the company; graphs refer to it as {\"$secret\": name}.",
    )
    ciphertext = models.TextField(
        editable=False, help_text="The value, Fernet-encrypted with a key derived from SECRETS_ENCRYPTION_KEY."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="Who created the secret.",
    )
    created_at = models.DateTimeField(auto_now_add=True, help_text="When the secret was created.")
    updated_at = models.DateTimeField(auto_now=True, help_text="When the secret row last changed.")
    rotated_at = models.DateTimeField(
        null=True, blank=True, help_text="When the value was last replaced; empty if never rotated."
    )

    class Meta:
        ordering = ["company__slug", "name"]
        constraints = [models.UniqueConstraint(fields=["company", "name"], name="secret_name_unique_per_company")]

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<Secret {self.pk}: {self.name}>"
