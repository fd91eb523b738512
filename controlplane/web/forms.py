"""Query-string forms of the operator pages (GET only: they filter, never write)."""
from __future__ import annotations

from django import forms

from controlplane.executions.models import ExecutionStatus
from controlplane.workflows.selectors import version_list, workflow_list


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


class PlanForm(forms.Form):
    """A plan preview's choice: one published version of the workflow and an environment."""

    version = forms.TypedChoiceField(coerce=int, help_text="The version to plan.")
    environment = forms.SlugField(max_length=50, initial="prod", help_text="Where it would run.")

    def __init__(self, *args, workflow, user, **kwargs):
        super().__init__(*args, **kwargs)
        versions = list(version_list(user=user, workflow=workflow).order_by("-number"))
        self.fields["version"].choices = [(v.number, f"v{v.number}") for v in versions]
        if versions and not self.is_bound and not (self.initial or {}).get("version"):
            self.initial["version"] = versions[0].number
