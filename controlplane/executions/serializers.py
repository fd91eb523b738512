"""API shapes of the executions app."""
from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from controlplane.core.errors import ApplicationError
from controlplane.deployments.models import DEFAULT_ENVIRONMENT
from controlplane.executions.models import DeadLetter, Execution, ExecutionEvent, ExecutionStatus
from controlplane.tenancy.serializers import id_field


@extend_schema_field(OpenApiTypes.OBJECT)
class JSONObjectField(serializers.JSONField):
    """A JSON value the service requires to be an object (schema only: the service refuses others)."""


class ExecutionCreateSerializer(serializers.Serializer):
    """`{deployment}` or `{workflow, environment}`; a bare `{version}` is refused with the way to deploy it."""

    deployment = serializers.IntegerField(required=False, help_text="Id of the deployment to run on.")
    workflow = serializers.IntegerField(
        required=False, help_text="Id of the workflow whose deployment in `environment` runs (instead of `deployment`)."
    )
    environment = serializers.SlugField(
        required=False, max_length=50,
        help_text=f"Environment of the workflow's deployment; default {DEFAULT_ENVIRONMENT!r}. Only with `workflow`.",
    )
    version = serializers.JSONField(
        required=False, write_only=True,
        help_text="Not accepted: executions run deployments. Deploy the version first (POST /api/v1/plans, then "
        "/plans/{id}/apply) and pass `deployment` or `workflow`.",
    )
    input = JSONObjectField(required=False, default=dict, help_text="The trigger input: a JSON object.")
    idempotency_key = serializers.CharField(
        required=False, allow_null=True, max_length=200,
        help_text="Same key in the same company returns the same execution instead of starting another.",
    )

    def validate(self, attrs):
        has_deployment, has_workflow = "deployment" in attrs, "workflow" in attrs
        if "version" in attrs:
            # The deployment decides the version; a run of "this version" would silently run another one.
            raise ApplicationError(
                "executions run a deployment, not a bare version; deploy the version first: POST /api/v1/plans "
                "then /plans/{id}/apply, and start it with {deployment: id} or {workflow: id, environment: name}",
                path="version",
            )
        if has_deployment and (has_workflow or "environment" in attrs):
            raise ApplicationError("give either `deployment` or `workflow` (+ `environment`), not both",
                                   path="deployment")
        if not has_deployment and not has_workflow:
            raise ApplicationError(
                "say what to run: {deployment: id} or {workflow: id, environment: name}", path="deployment"
            )
        if has_workflow:
            attrs.setdefault("environment", DEFAULT_ENVIRONMENT)
        return attrs


class ExecutionFilterSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=ExecutionStatus.choices, required=False)
    workflow = id_field(required=False)
    version = id_field(required=False, help_text="Workflow version id.")
    deployment = id_field(required=False)
    environment = serializers.SlugField(required=False, max_length=50)
    created_after = serializers.DateTimeField(required=False)
    created_before = serializers.DateTimeField(required=False)


class ExecutionOutSerializer(serializers.ModelSerializer):
    workflow = serializers.IntegerField(source="version.workflow_id", read_only=True)
    company = serializers.CharField(source="company.slug", read_only=True)
    version_number = serializers.IntegerField(source="version.number", read_only=True,
                                              help_text="Number of the pinned version (`version` is its id).")
    duration_ms = serializers.SerializerMethodField()

    class Meta:
        model = Execution
        fields = [
            "id", "company", "workflow", "deployment", "environment", "version", "version_number", "trigger",
            "trigger_details",
            "status", "input", "idempotency_key", "error", "event_seq", "created_at", "started_at", "finished_at",
            "duration_ms",
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
    after = serializers.IntegerField(
        required=False, default=0, min_value=0, max_value=2**63 - 1, help_text="Only events with seq > after."
    )
    limit = serializers.IntegerField(required=False, default=1000, min_value=1, max_value=5000)


class ExecutionEventsPageSerializer(serializers.Serializer):
    """Events after `after`, oldest first; poll again with `after=last_seq` for the next ones."""

    results = ExecutionEventSerializer(many=True)
    last_seq = serializers.IntegerField(help_text="The seq of the last event returned (else `after`).")


class DeadLetterFilterSerializer(serializers.Serializer):
    execution = serializers.UUIDField(required=False)
    status = serializers.ChoiceField(choices=[("pending", "Not replayed"), ("replayed", "Replayed")], required=False,
                                     help_text="pending: not replayed yet; replayed: a replay was started.")


class DeadLetterSerializer(serializers.ModelSerializer):
    status = serializers.SerializerMethodField()
    deployment = serializers.IntegerField(source="execution.deployment_id", read_only=True, allow_null=True)
    environment = serializers.CharField(source="execution.environment", read_only=True)
    workflow = serializers.IntegerField(source="execution.version.workflow_id", read_only=True)

    class Meta:
        model = DeadLetter
        fields = [
            "id", "execution", "deployment", "environment", "workflow", "node_id", "shard", "attempts", "error",
            "status", "created_at", "replayed_at", "replay_execution",
        ]

    def get_status(self, obj: DeadLetter) -> str:
        return "replayed" if obj.replayed_at else "pending"
