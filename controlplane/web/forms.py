"""Query-string forms of the operator pages (GET only: they filter, never write)."""
from __future__ import annotations

from django import forms

from controlplane.executions.models import ExecutionStatus
from controlplane.workflows.selectors import workflow_list


class ExecutionFilterForm(forms.Form):
    """`?status=&workflow=` of the executions list; workflows are those of the caller's companies."""

    status = forms.ChoiceField(choices=[("", "any status"), *ExecutionStatus.choices], required=False)
    workflow = forms.TypedChoiceField(coerce=int, empty_value=None, required=False)

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        workflows = workflow_list(user=user).select_related("project__company").order_by(
            "project__company__slug", "project__slug", "slug"
        )
        self.fields["workflow"].choices = [("", "any workflow")] + [
            (wf.pk, f"{wf.project.company.slug}/{wf.project.slug}/{wf.slug}") for wf in workflows
        ]
