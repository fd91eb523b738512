"""Approvals API shapes."""
from __future__ import annotations

from rest_framework import serializers

from controlplane.approvals.models import Approval, ApprovalStatus, Decision
from controlplane.approvals.services import MAX_COMMENT_CHARS


class ApprovalFilterSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=ApprovalStatus.choices, required=False,
                                     help_text="Only approvals in this status (pending: waiting for a decision).")
    mine = serializers.BooleanField(required=False, default=False,
                                    help_text="1: only pending approvals the caller may decide.")
    execution = serializers.UUIDField(required=False, help_text="Only the approvals of this run.")


class ApprovalSerializer(serializers.ModelSerializer):
    workflow = serializers.IntegerField(source="execution.version.workflow_id", read_only=True)
    execution_status = serializers.CharField(source="execution.status", read_only=True)
    requested_by = serializers.CharField(source="requested_by.username", read_only=True, allow_null=True, default=None)
    decided_by = serializers.CharField(source="decided_by.username", read_only=True, allow_null=True, default=None)
    input_schema = serializers.JSONField(read_only=True, allow_null=True,
                                         help_text="JSON Schema of the decision's input (null: any object).")
    input = serializers.JSONField(read_only=True, allow_null=True, help_text="The approved decision's input.")
    approvers = serializers.JSONField(read_only=True, help_text="{roles: [...], users: [...]}")
    may_decide = serializers.SerializerMethodField(help_text="Whether the caller may decide it now.")

    class Meta:
        model = Approval
        fields = ["id", "company", "execution", "execution_status", "workflow", "node_id", "status", "prompt",
                  "approvers", "four_eyes", "input_schema", "requested_by", "deadline", "decided_by", "decided_at",
                  "comment", "input", "created_at", "may_decide"]

    def get_may_decide(self, approval: Approval) -> bool:
        from controlplane.approvals.services import approval_why_not

        request = self.context.get("request")
        if request is None or approval.status != ApprovalStatus.PENDING:
            return False
        return approval.execution.status == "waiting" and approval_why_not(approval, request.user) is None


class ApprovalDecideSerializer(serializers.Serializer):
    decision = serializers.ChoiceField(choices=Decision.choices, help_text="approve or reject.")
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=MAX_COMMENT_CHARS)
    input = serializers.JSONField(required=False, default=None,
                                  help_text="approve: the input (an object valid for the approval's input_schema); "
                                            "it becomes the step's output.")
