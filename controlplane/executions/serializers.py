"""API shapes of the executions app."""
from __future__ import annotations

from rest_framework import serializers

from controlplane.executions.models import Execution, ExecutionEvent, ExecutionStatus


class ExecutionCreateSerializer(serializers.Serializer):
    version = serializers.IntegerField(help_text="Id of the published workflow version to run.")
    input = serializers.JSONField(required=False, default=dict, help_text="The trigger input: a JSON object.")
    idempotency_key = serializers.CharField(
        required=False, allow_null=True, max_length=200,
        help_text="Same key in the same company returns the same execution instead of starting another.",
    )


class ExecutionFilterSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=ExecutionStatus.choices, required=False)
    workflow = serializers.IntegerField(required=False)
    version = serializers.IntegerField(required=False)
    created_after = serializers.DateTimeField(required=False)
    created_before = serializers.DateTimeField(required=False)


class ExecutionOutSerializer(serializers.ModelSerializer):
    workflow = serializers.IntegerField(source="version.workflow_id", read_only=True)
    company = serializers.CharField(source="company.slug", read_only=True)
    duration_ms = serializers.SerializerMethodField()

    class Meta:
        model = Execution
        fields = [
            "id", "company", "workflow", "version", "trigger", "status", "input", "idempotency_key", "error",
            "event_seq", "created_at", "started_at", "finished_at", "duration_ms",
        ]

    def get_duration_ms(self, obj: Execution) -> int | None:
        if obj.started_at and obj.finished_at:
            return int((obj.finished_at - obj.started_at).total_seconds() * 1000)
        return None


class ExecutionDetailSerializer(ExecutionOutSerializer):
    class Meta(ExecutionOutSerializer.Meta):
        fields = ExecutionOutSerializer.Meta.fields + ["graph", "canvas"]


class ExecutionEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = ExecutionEvent
        fields = ["seq", "type", "data", "created_at"]


class EventsQuerySerializer(serializers.Serializer):
    after = serializers.IntegerField(required=False, default=0, min_value=0, help_text="Only events with seq > after.")
    limit = serializers.IntegerField(required=False, default=1000, min_value=1, max_value=5000)
