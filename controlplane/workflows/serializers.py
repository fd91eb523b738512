"""Request and response shapes of the workflows API."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from controlplane.tenancy.serializers import id_field, slug_field
from controlplane.workflows.models import (
    Workflow,
    WorkflowAuditEvent,
    WorkflowStatus,
    WorkflowTemplate,
    WorkflowVersion,
)
from controlplane.workflows.selectors import MAX_VERSION_NUMBER, graph_validation

GRAPH_HELP = (
    "A graph document: {params, nodes: [{id, type, config, ...}], edges: [{from, to, delivery}]}. "
    "Send it as an object (JSON or YAML body) or as JSON/YAML text in a string."
)


class GraphField(serializers.JSONField):
    """A graph document as sent; its shape is checked (with precise paths) by `clean_graph_document`."""

    def to_internal_value(self, data):
        return data


class IssueSerializer(serializers.Serializer):
    path = serializers.CharField(help_text="Where in the graph, e.g. nodes[2].config.url.")
    message = serializers.CharField(help_text="What is wrong and how to fix it.")
    code = serializers.CharField(help_text="Stable machine-readable kind, e.g. cycle or dangling_edge.")


class ValidationSerializer(serializers.Serializer):
    ok = serializers.BooleanField(help_text="True when the graph can be published.")
    issues = IssueSerializer(many=True, help_text="Every problem found, each with its path.")


def validation_data(report) -> dict:
    return {"ok": report.ok, "issues": [issue.to_dict() for issue in report.issues]}


# Workflows


class WorkflowOutSerializer(serializers.ModelSerializer):
    company = serializers.IntegerField(source="project.company_id", read_only=True, help_text="The owning company.")
    revision = serializers.IntegerField(
        source="draft_revision", read_only=True, help_text="Draft revision; send it back in If-Match to write."
    )
    version_count = serializers.IntegerField(read_only=True, help_text="How many versions were published.")
    latest_version = serializers.IntegerField(
        source="latest_version_number", read_only=True, allow_null=True, help_text="Number of the newest version."
    )
    created_by = serializers.CharField(
        source="created_by.username", read_only=True, allow_null=True, help_text="Who created the workflow."
    )

    class Meta:
        model = Workflow
        fields = [
            "id",
            "company",
            "project",
            "slug",
            "name",
            "description",
            "status",
            "revision",
            "version_count",
            "latest_version",
            "created_by",
            "created_at",
            "updated_at",
        ]


class WorkflowDetailSerializer(WorkflowOutSerializer):
    graph = serializers.JSONField(source="draft_graph", read_only=True, help_text="The draft graph document.")
    validation = serializers.SerializerMethodField(help_text="Validation of the draft; publishing needs ok=true.")

    class Meta(WorkflowOutSerializer.Meta):
        fields = WorkflowOutSerializer.Meta.fields + ["graph", "validation"]

    @extend_schema_field(ValidationSerializer)
    def get_validation(self, workflow: Workflow) -> dict:
        return validation_data(graph_validation(workflow.draft_graph))


class WorkflowFilterSerializer(serializers.Serializer):
    project = id_field(required=False, help_text="Only workflows of this project.")
    company = id_field(required=False, help_text="Only workflows of this company.")
    status = serializers.ChoiceField(choices=WorkflowStatus.choices, required=False, help_text="Only this status.")


class WorkflowCreateSerializer(serializers.Serializer):
    project = id_field(help_text="Id of the project; you must be an editor or above in its company.")
    slug = slug_field(help_text="Unique within the project.")
    name = serializers.CharField(max_length=200, help_text="Display name.")
    description = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=10_000, help_text="What the workflow does."
    )
    graph = GraphField(required=False, help_text=GRAPH_HELP + " Defaults to an empty graph.")
    template = id_field(
        required=False, help_text="Id of a template of the project's company to start from (instead of `graph`)."
    )

    def validate(self, data):
        if "template" in data and "graph" in data:
            raise serializers.ValidationError({"template": "send a template or a graph, not both"})
        return data


class DraftUpdateSerializer(serializers.Serializer):
    """PATCH: any subset. PUT: `graph` required."""

    name = serializers.CharField(required=False, max_length=200, help_text="Display name.")
    description = serializers.CharField(
        required=False, allow_blank=True, max_length=10_000, help_text="What the workflow does."
    )
    graph = GraphField(required=False, help_text=GRAPH_HELP + " Saved even when it does not validate.")


class DraftReplaceSerializer(DraftUpdateSerializer):
    graph = GraphField(help_text=GRAPH_HELP + " Saved even when it does not validate.")


class ValidateRequestSerializer(serializers.Serializer):
    graph = GraphField(required=False, help_text=GRAPH_HELP + " Omit it to validate the saved draft.")


class StatusSerializer(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=WorkflowStatus.choices,
        help_text="draft only before the first version; active or paused after it; archived any time.",
    )


# Versions


class VersionOutSerializer(serializers.ModelSerializer):
    published_by = serializers.CharField(source="published_by.username", read_only=True, help_text="Who published.")

    class Meta:
        model = WorkflowVersion
        fields = ["id", "workflow", "number", "digest", "published_by", "published_at"]


class VersionDetailSerializer(VersionOutSerializer):
    project = serializers.IntegerField(source="workflow.project_id", read_only=True, help_text="The project.")
    company = serializers.IntegerField(
        source="workflow.project.company_id", read_only=True, help_text="The owning company."
    )

    class Meta(VersionOutSerializer.Meta):
        fields = VersionOutSerializer.Meta.fields + ["project", "company", "graph"]


class PublishResultSerializer(VersionDetailSerializer):
    created = serializers.SerializerMethodField(help_text="False when the draft was already published as this version.")

    class Meta(VersionDetailSerializer.Meta):
        fields = VersionDetailSerializer.Meta.fields + ["created"]

    def get_created(self, version) -> bool:
        return bool(self.context.get("created"))


class DiffQuerySerializer(serializers.Serializer):
    against = id_field(
        help_text="Id of the version to compare from (the older one, usually); a version of the same workflow."
    )


class NumberDiffQuerySerializer(serializers.Serializer):
    against = serializers.IntegerField(
        min_value=1, max_value=MAX_VERSION_NUMBER,
        help_text="Number of the version of this workflow to compare from (the older one, usually), e.g. 1.",
    )


class VersionRefSerializer(serializers.ModelSerializer):
    class Meta:
        model = WorkflowVersion
        fields = ["id", "workflow", "number", "digest"]


class DiffSerializer(serializers.Serializer):
    from_ = VersionRefSerializer(help_text="The version compared from (?against=).")
    to = VersionRefSerializer(help_text="The version compared to (the one in the URL).")
    diff = serializers.JSONField(
        help_text="nodes_added, nodes_removed, nodes_changed [{id, fields}], edges_added, edges_removed, ..."
    )
    summary = serializers.CharField(help_text="One line, e.g. '1 node added, 1 changed, 0 removed; 1 edge added'.")
    empty = serializers.BooleanField(help_text="True when the graphs say the same thing.")

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = fields.pop("from_")
        return fields


# Operations: clone, templates, audit


class CloneSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200, help_text="Display name of the new workflow.")
    slug = slug_field(required=False, help_text="Unique within the project; default: made from the name.")
    version = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_VERSION_NUMBER,
        help_text="Number of the version to copy; default: the latest (the draft if none was published).",
    )
    project = id_field(required=False, help_text="Project of the new workflow (same company); default: the source's.")


class TemplateCreateSerializer(serializers.Serializer):
    workflow = id_field(help_text="Id of the workflow whose published version is saved.")
    version = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_VERSION_NUMBER, help_text="Version number; default: the latest."
    )
    name = serializers.CharField(max_length=200, help_text="Unique within the company.")
    description = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=10_000, help_text="What workflows made from it do."
    )


class TemplateFilterSerializer(serializers.Serializer):
    company = id_field(required=False, help_text="Only templates of this company.")


class TemplateInstantiateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200, help_text="Display name of the new workflow.")
    slug = slug_field(required=False, help_text="Unique within the project; default: made from the name.")
    project = id_field(
        required=False, help_text="Project of the new workflow (the template's company); default: the source's."
    )


class TemplateOutSerializer(serializers.ModelSerializer):
    created_by = serializers.CharField(
        source="created_by.username", read_only=True, allow_null=True, help_text="Who saved the template."
    )

    class Meta:
        model = WorkflowTemplate
        fields = ["id", "company", "name", "description", "source_workflow", "source_version", "created_by",
                  "created_at"]


class TemplateDetailSerializer(TemplateOutSerializer):
    class Meta(TemplateOutSerializer.Meta):
        fields = TemplateOutSerializer.Meta.fields + ["graph"]


class AuditEventSerializer(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor_username", read_only=True, help_text="Who did it.")

    class Meta:
        model = WorkflowAuditEvent
        fields = ["id", "kind", "workflow_id", "template_id", "data", "actor", "at"]
