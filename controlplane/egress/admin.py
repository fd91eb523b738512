"""Admin for egress rules: changes go through the services, so the admin is audited like the API."""
from __future__ import annotations

from django import forms
from django.contrib import admin

from controlplane.core.errors import ApplicationError
from controlplane.egress import services
from controlplane.egress.models import EgressAuditEvent, EgressRule
from pipelines.egress import EgressRuleError, parse_rule


class EgressRuleForm(forms.ModelForm):
    class Meta:
        model = EgressRule
        fields = ["company", "entry", "description"]

    def clean_entry(self):
        # Report a bad entry on the form, not as a server error from the service.
        entry = self.cleaned_data["entry"]
        try:
            return parse_rule(entry).canonical
        except EgressRuleError as exc:
            raise forms.ValidationError(str(exc)) from None


@admin.register(EgressRule)
class EgressRuleAdmin(admin.ModelAdmin):
    form = EgressRuleForm
    list_display = ["entry", "company", "description", "created_by", "updated_at"]
    list_filter = ["company"]
    search_fields = ["entry", "description"]
    readonly_fields = ["created_by", "created_at", "updated_at"]

    def save_model(self, request, obj, form, change):
        try:
            if change:
                saved = services.egress_rule_update(rule=obj, entry=form.cleaned_data["entry"],
                                                    description=form.cleaned_data["description"],
                                                    user=request.user, via="admin")
            else:
                saved = services.egress_rule_create(company=obj.company, entry=form.cleaned_data["entry"],
                                                    description=form.cleaned_data["description"],
                                                    user=request.user, via="admin")
        except ApplicationError as exc:
            raise forms.ValidationError(exc.detail) from None
        obj.pk = saved.pk
        obj.refresh_from_db()

    def delete_model(self, request, obj):
        services.egress_rule_delete(rule=obj, user=request.user, via="admin")

    def delete_queryset(self, request, queryset):
        for rule in queryset:
            services.egress_rule_delete(rule=rule, user=request.user, via="admin")


@admin.register(EgressAuditEvent)
class EgressAuditEventAdmin(admin.ModelAdmin):
    list_display = ["at", "company", "action", "rule_id", "actor_username", "via"]
    list_filter = ["company", "action", "via"]
    readonly_fields = ["company", "rule_id", "action", "before", "after", "actor", "actor_username", "via", "at"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
