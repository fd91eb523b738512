"""Input and output shapes of the deployments API. Secrets stay references: nothing here resolves them."""
from __future__ import annotations

from rest_framework import serializers

from controlplane.deployments.models import (
    Deployment,
    DeploymentEvent,
    DeploymentPlan,
    DeploymentStatus,
    EventKind,
    JobDeployment,
)
from controlplane.tenancy.serializers import id_field


class PlanCreateIn(serializers.Serializer):
    workflow = serializers.IntegerField(help_text="Workflow id.")
    version = serializers.IntegerField(min_value=1, help_text="Version number of that workflow.")
    environment = serializers.SlugField(max_length=50, help_text="Target environment, e.g. prod.")
    placement = serializers.DictField(child=serializers.CharField(), required=False, default=dict,
                                      help_text="{job id or alias: worker group slug}")
    replicas = serializers.DictField(child=serializers.IntegerField(), required=False, default=dict,
                                     help_text="{job id or alias: replicas}")


class DeploymentFilterIn(serializers.Serializer):
    workflow = id_field(required=False, help_text="Only deployments of this workflow (id).")
    environment = serializers.SlugField(required=False, max_length=50, help_text="Only this environment.")
    status = serializers.ChoiceField(choices=DeploymentStatus.choices, required=False, help_text="Only this status.")


class EventFilterIn(serializers.Serializer):
    kind = serializers.ChoiceField(choices=EventKind.choices, required=False, help_text="Only events of this kind.")


class ReconcileIn(serializers.Serializer):
    dry_run = serializers.BooleanField(default=True, help_text="List drift only (default) or converge it.")


class RollbackIn(serializers.Serializer):
    version = serializers.IntegerField(min_value=1, help_text="Version number to roll back to.")


class AcceptDriftIn(serializers.Serializer):
    drift = serializers.JSONField(help_text="A drift from a reconcile report (object with kind/job_id/...) or its id.")

    def validate_drift(self, value):
        if not isinstance(value, (dict, str)) or not value:
            raise serializers.ValidationError("give the drift object from a reconcile report, or its id")
        return value


class PlanOut(serializers.ModelSerializer):
    workflow = serializers.IntegerField(source="workflow_id")
    version = serializers.IntegerField(source="version.number")
    version_id = serializers.IntegerField()

    class Meta:
        model = DeploymentPlan
        fields = ["id", "workflow", "environment", "version", "version_id", "base_revision", "placement", "replicas",
                  "plan", "text", "summary", "has_errors", "created_by", "created_at", "applied_at"]


class JobDeploymentOut(serializers.ModelSerializer):
    group = serializers.CharField(source="group.slug")
    queue = serializers.CharField(source="group.queue_name")

    class Meta:
        model = JobDeployment
        fields = ["job_id", "kind", "type", "group", "queue", "replicas", "spec", "digest", "status", "updated_at"]


class DeploymentOut(serializers.ModelSerializer):
    workflow = serializers.IntegerField(source="workflow_id")
    workflow_slug = serializers.CharField(source="workflow.slug")
    version = serializers.IntegerField(source="version.number")
    version_id = serializers.IntegerField()
    accepts_executions = serializers.SerializerMethodField()

    class Meta:
        model = Deployment
        fields = ["id", "workflow", "workflow_slug", "environment", "version", "version_id", "status", "placement",
                  "replicas", "pinned", "auto_reconcile", "revision", "accepts_executions", "created_by",
                  "created_at", "updated_at"]

    def get_accepts_executions(self, obj) -> bool:
        from controlplane.deployments.selectors import deployment_accepts_executions

        return deployment_accepts_executions(obj)


class DeploymentDetailOut(DeploymentOut):
    jobs = serializers.SerializerMethodField()

    class Meta(DeploymentOut.Meta):
        fields = DeploymentOut.Meta.fields + ["jobs"]

    def get_jobs(self, obj) -> list[dict]:
        from controlplane.deployments.selectors import deployment_jobs

        return JobDeploymentOut(deployment_jobs(obj), many=True).data


class EventOut(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor.username", default=None)

    class Meta:
        model = DeploymentEvent
        fields = ["id", "deployment", "workflow", "environment", "kind", "actor", "data", "created_at"]
