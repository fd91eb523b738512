from __future__ import annotations

from rest_framework import serializers

from controlplane.egress.models import EgressAuditEvent, EgressRule


class EgressRuleOut(serializers.ModelSerializer):
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = EgressRule
        fields = ["id", "company", "entry", "description", "created_by", "created_at", "updated_at"]
        read_only_fields = fields


class EgressRuleCreateIn(serializers.Serializer):
    company = serializers.IntegerField(help_text="The company whose steps the rule opens egress for.")
    entry = serializers.CharField(max_length=300, help_text="10.0.0.0/8, 127.0.0.1:8080, [::1]:80, api.internal:8443")
    description = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class EgressRuleUpdateIn(serializers.Serializer):
    entry = serializers.CharField(max_length=300, required=False)
    description = serializers.CharField(max_length=500, required=False, allow_blank=True)


class EgressAuditEventOut(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor_username", read_only=True)

    class Meta:
        model = EgressAuditEvent
        fields = ["id", "company", "rule_id", "action", "before", "after", "actor", "via", "at"]
        read_only_fields = fields
