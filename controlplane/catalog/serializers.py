"""Input and output shapes of the catalog API. Output serializers never carry a secret value."""
from __future__ import annotations

from rest_framework import serializers

from controlplane.catalog.models import (
    Blueprint,
    BlueprintVersion,
    JobTemplate,
    Secret,
    blueprint_name_validator,
    secret_name_validator,
    step_type_validator,
    template_name_validator,
)
from controlplane.catalog.services import MAX_SECRET_BYTES


# -- blueprints ---------------------------------------------------------------------------------


class CompanyFilterIn(serializers.Serializer):
    company = serializers.IntegerField(
        required=False, min_value=1, max_value=2**63 - 1, help_text="Only objects of this company (id)."
    )


class BlueprintOut(serializers.ModelSerializer):
    version_count = serializers.IntegerField(read_only=True, default=0, help_text="How many versions are published.")
    latest_version = serializers.IntegerField(read_only=True, allow_null=True, default=None, help_text="Highest version number.")

    class Meta:
        model = Blueprint
        fields = ["id", "company", "name", "description", "version_count", "latest_version", "created_at"]
        read_only_fields = fields


# Names carry their model's validators so the schema states the pattern the service enforces.


class BlueprintCreateIn(serializers.Serializer):
    company = serializers.IntegerField(help_text="Id of the company that will own the blueprint.")
    name = serializers.CharField(max_length=100, validators=[blueprint_name_validator])
    description = serializers.CharField(required=False, allow_blank=True, default="")


class BlueprintUpdateIn(serializers.Serializer):
    name = serializers.CharField(max_length=100, required=False, validators=[blueprint_name_validator])
    description = serializers.CharField(required=False, allow_blank=True)


class BlueprintPublishIn(serializers.Serializer):
    document = serializers.JSONField(help_text="The sub-graph: {params, inputs, outputs, nodes, edges}.")


class BlueprintVersionOut(serializers.ModelSerializer):
    ref = serializers.CharField(read_only=True, help_text="How graphs refer to it: name@number.")
    published_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = BlueprintVersion
        fields = ["id", "blueprint", "ref", "number", "digest", "published_by", "published_at"]
        read_only_fields = fields


class BlueprintVersionDetailOut(BlueprintVersionOut):
    class Meta(BlueprintVersionOut.Meta):
        fields = [*BlueprintVersionOut.Meta.fields, "document"]
        read_only_fields = fields


# -- job templates ------------------------------------------------------------------------------


class JobTemplateOut(serializers.ModelSerializer):
    class Meta:
        model = JobTemplate
        fields = ["id", "company", "name", "step_type", "defaults", "param_schema", "description", "created_at", "updated_at"]
        read_only_fields = fields


class JobTemplateIn(serializers.Serializer):
    company = serializers.IntegerField(help_text="Id of the owning company (create only).")
    name = serializers.CharField(max_length=100, validators=[template_name_validator])
    step_type = serializers.CharField(max_length=64, validators=[step_type_validator])
    defaults = serializers.JSONField(required=False, default=dict)
    param_schema = serializers.JSONField(required=False, default=dict)
    description = serializers.CharField(required=False, allow_blank=True, default="")


class JobTemplateUpdateIn(serializers.Serializer):
    name = serializers.CharField(max_length=100, required=False, validators=[template_name_validator])
    step_type = serializers.CharField(max_length=64, required=False, validators=[step_type_validator])
    defaults = serializers.JSONField(required=False)
    param_schema = serializers.JSONField(required=False)
    description = serializers.CharField(required=False, allow_blank=True)


# -- secrets ------------------------------------------------------------------------------------


class SecretOut(serializers.ModelSerializer):
    """Metadata only. There is deliberately no field that could hold the value or ciphertext."""

    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Secret
        fields = ["id", "company", "name", "created_by", "created_at", "updated_at", "rotated_at"]
        read_only_fields = fields


def _value_field() -> serializers.CharField:
    return serializers.CharField(
        write_only=True,
        trim_whitespace=False,
        max_length=MAX_SECRET_BYTES,
        style={"input_type": "password"},
        help_text="The secret value; write-only, never returned.",
    )


class SecretCreateIn(serializers.Serializer):
    company = serializers.IntegerField(help_text="Id of the owning company.")
    name = serializers.CharField(max_length=200, validators=[secret_name_validator])
    value = _value_field()


class SecretRotateIn(serializers.Serializer):
    value = _value_field()
