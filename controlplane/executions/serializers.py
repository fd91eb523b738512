"""API shapes of the executions app."""
from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from controlplane.core.errors import ApplicationError
from controlplane.deployments.models import DEFAULT_ENVIRONMENT
from controlplane.executions.models import (
    DeadLetter,
    Execution,
    ExecutionEvent,
    ExecutionStatus,
    ReplayMode,
    Trigger,
)
from controlplane.executions.services.replay import ACTIVE, PINNED
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
    trigger = serializers.ChoiceField(choices=Trigger.choices, required=False,
                                      help_text="What started the runs: manual, schedule, webhook or replay.")


class ExecutionSummarySerializer(serializers.Serializer):
    """Counts per status of the executions the same filters list."""

    total = serializers.IntegerField()
    by_status = serializers.DictField(child=serializers.IntegerField(), help_text="{status: count}, every status.")


class ExecutionOutSerializer(serializers.ModelSerializer):
    workflow = serializers.IntegerField(source="version.workflow_id", read_only=True)
    company = serializers.CharField(source="company.slug", read_only=True)
    version_number = serializers.IntegerField(source="version.number", read_only=True,
                                              help_text="Number of the pinned version (`version` is its id).")
    duration_ms = serializers.SerializerMethodField()
    replay_mode = serializers.CharField(read_only=True, help_text="exact, modified or from_step for a replay; empty "
                                        "otherwise (`replay_of` is the original run).")

    class Meta:
        model = Execution
        fields = [
            "id", "company", "workflow", "deployment", "environment", "version", "version_number", "trigger",
            "trigger_details",
            "status", "input", "idempotency_key", "error", "event_seq", "created_at", "started_at", "finished_at",
            "duration_ms", "replay_of", "replay_mode",
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


class SseMessageSerializer(serializers.Serializer):
    """One Server-Sent Events message of the live stream: an event (or the final `end`)."""

    id = serializers.CharField(required=False, help_text="The event's seq: send it back as Last-Event-ID.")
    event = serializers.CharField(required=False, help_text="The event type, or `end` after the run's last event.")
    data = serializers.CharField(required=False, help_text="JSON: {seq, type, data, created_at}; for `end`, "
                                 "{status, last_seq}.")


class DeadLetterFilterSerializer(serializers.Serializer):
    execution = serializers.UUIDField(required=False)
    workflow = id_field(required=False)
    deployment = id_field(required=False)
    node = serializers.CharField(required=False, max_length=200, help_text="The failed step's node id.")
    status = serializers.ChoiceField(
        choices=[("pending", "Open"), ("open", "Open (alias of pending)"), ("replayed", "Replayed"),
                 ("discarded", "Discarded")],
        required=False, help_text="pending (or open): neither replayed nor discarded; replayed; discarded.",
    )
    created_after = serializers.DateTimeField(required=False)
    created_before = serializers.DateTimeField(required=False)


class DeadLetterSerializer(serializers.ModelSerializer):
    status = serializers.CharField(read_only=True, help_text="pending (open), replayed or discarded.")
    deployment = serializers.IntegerField(source="execution.deployment_id", read_only=True, allow_null=True)
    environment = serializers.CharField(source="execution.environment", read_only=True)
    workflow = serializers.IntegerField(source="execution.version.workflow_id", read_only=True)
    resolved_by = serializers.CharField(source="resolved_by.username", read_only=True, allow_null=True, default=None)

    class Meta:
        model = DeadLetter
        fields = [
            "id", "execution", "deployment", "environment", "workflow", "node_id", "shard", "attempts", "error",
            "status", "created_at", "replayed_at", "replay_execution", "discarded_at", "discard_reason",
            "resolved_by",
        ]


class DeadLetterDetailSerializer(DeadLetterSerializer):
    """One letter with what a replay would run: the step's spec and its recorded input."""

    job = JSONObjectField(source="payload.job", read_only=True, help_text="The failed step's job spec.")
    input = serializers.JSONField(source="payload.input", read_only=True, default=None,
                                  help_text="The rendered input the last attempt ran with (secrets as references).")
    step_run = serializers.IntegerField(source="step_run_id", read_only=True, allow_null=True)

    class Meta(DeadLetterSerializer.Meta):
        fields = DeadLetterSerializer.Meta.fields + ["job", "input", "step_run"]


VERSION_HELP = (f"{PINNED}: the original run's own version and artifacts; {ACTIVE}: what the deployment runs now. "
                "Recorded on both runs.")


class ExecutionReplaySerializer(serializers.Serializer):
    mode = serializers.ChoiceField(choices=ReplayMode.choices, default=ReplayMode.EXACT,
                                   help_text="exact (same input), modified (input and/or mock), from_step.")
    version = serializers.ChoiceField(choices=[(PINNED, "Pinned"), (ACTIVE, "Active")], default=ACTIVE,
                                      help_text=VERSION_HELP + f" Default {ACTIVE}.")
    input = JSONObjectField(required=False, help_text="modified / from_step: the new trigger input (an object).")
    from_step = serializers.CharField(required=False, max_length=200,
                                      help_text="from_step: the node to run again; everything not downstream of it "
                                      "reuses its recorded output.")
    mock = JSONObjectField(required=False, help_text="{node_id: output}: those nodes record the given output "
                           "instead of running (modified, from_step).")


class ExecutionCancelSerializer(serializers.Serializer):
    compensate = serializers.BooleanField(
        default=False, help_text="Also undo the steps that completed: the run is compensating until its saga has "
        "waited for the steps still running and compensated the completed ones, latest first; it then ends "
        "cancelled (or compensation_failed). Default false: cancelled at once, nothing undone.")
    reason = serializers.CharField(required=False, allow_blank=True, max_length=2000,
                                   help_text="Why; kept on the run's execution.cancelled event with who cancelled it.")


class DeadLetterReplaySerializer(serializers.Serializer):
    input = serializers.JSONField(required=False, help_text="Run the step with this input instead of the recorded "
                                  "one (its rendered config).")
    version = serializers.ChoiceField(choices=[(PINNED, "Pinned"), (ACTIVE, "Active")], default=ACTIVE,
                                      help_text="Only when a new from_step run is started: " + VERSION_HELP)


class DeadLetterDiscardSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=2000, help_text="Why nobody will replay it.")


class DeadLetterBulkReplaySerializer(DeadLetterFilterSerializer):
    """Which letters (the list's filters; only open ones are replayed) and the version for new runs."""

    version = serializers.ChoiceField(choices=[(PINNED, "Pinned"), (ACTIVE, "Active")], default=ACTIVE)


class DeadLetterBulkResultSerializer(serializers.Serializer):
    dead_letter = serializers.IntegerField()
    execution = serializers.UUIDField(required=False, help_text="The run that carries on.")
    outcome = serializers.ChoiceField(choices=["continued", "from_step"], required=False)
    error = serializers.CharField(required=False, help_text="Why this letter was not replayed (an error code).")
    detail = serializers.CharField(required=False)


class DeadLetterBulkReplayOutSerializer(serializers.Serializer):
    results = DeadLetterBulkResultSerializer(many=True)


class ExecutionDiffQuerySerializer(serializers.Serializer):
    left = serializers.UUIDField(help_text="Id of one execution.")
    right = serializers.UUIDField(help_text="Id of the execution to compare it with.")


class StepDiffSerializer(serializers.Serializer):
    node_id = serializers.CharField()
    result = serializers.ChoiceField(choices=["identical", "status_differs", "output_differs", "only_left",
                                              "only_right"])
    left_status = serializers.CharField(allow_null=True)
    right_status = serializers.CharField(allow_null=True)
    paths = serializers.ListField(child=serializers.CharField(), help_text="Differing JSON paths of the output.")
    truncated = serializers.BooleanField(required=False)


class JsonPathsSerializer(serializers.Serializer):
    identical = serializers.BooleanField()
    paths = serializers.ListField(child=serializers.CharField())
    truncated = serializers.BooleanField()


class VersionSideSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    number = serializers.IntegerField()
    workflow = serializers.IntegerField()
    deployment = serializers.IntegerField(allow_null=True)


class VersionDiffSerializer(serializers.Serializer):
    identical = serializers.BooleanField()
    left = VersionSideSerializer()
    right = VersionSideSerializer()


class ExecutionDiffSerializer(serializers.Serializer):
    left = serializers.UUIDField()
    right = serializers.UUIDField()
    identical = serializers.BooleanField()
    input = JsonPathsSerializer()
    version = VersionDiffSerializer()
    status = serializers.DictField(child=serializers.CharField())
    steps = StepDiffSerializer(many=True)
    summary = serializers.DictField(child=serializers.IntegerField())
