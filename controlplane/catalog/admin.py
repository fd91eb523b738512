"""Admin for the catalog. Versions are read-only; secret values are write-only and never shown.

Writes go through the services, like every other write: the admin forms only collect input.
"""
from __future__ import annotations

import json

from django import forms
from django.contrib import admin
from django.utils.html import format_html

from controlplane.catalog import services
from controlplane.catalog.models import Blueprint, BlueprintVersion, JobTemplate, Secret
from controlplane.core.errors import ApplicationError


def _pretty(document) -> str:
    return format_html("<pre>{}</pre>", json.dumps(document, indent=2, sort_keys=True))


class BlueprintVersionInline(admin.TabularInline):
    model = BlueprintVersion
    fields = ["number", "digest", "published_by", "published_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Blueprint)
class BlueprintAdmin(admin.ModelAdmin):
    list_display = ["name", "company", "created_at"]
    list_filter = ["company"]
    search_fields = ["name", "description"]
    readonly_fields = ["created_by", "created_at"]
    inlines = [BlueprintVersionInline]

    def get_readonly_fields(self, request, obj=None):
        # Graphs refer to published blueprints by company and name: those stay put once published.
        if obj is not None and obj.versions.exists():
            return [*self.readonly_fields, "company", "name"]
        return self.readonly_fields

    def has_delete_permission(self, request, obj=None) -> bool:
        if obj is not None and obj.versions.exists():
            return False
        return super().has_delete_permission(request, obj)

    def save_model(self, request, obj, form, change):
        if change:
            services.blueprint_update(blueprint=obj, name=obj.name, description=obj.description)
        else:
            created = services.blueprint_create(
                company=obj.company, name=obj.name, description=obj.description, user=request.user
            )
            obj.pk = created.pk
            obj.refresh_from_db()

    def delete_model(self, request, obj):
        services.blueprint_delete(blueprint=obj)

    def delete_queryset(self, request, queryset):
        for blueprint in queryset:
            services.blueprint_delete(blueprint=blueprint)


@admin.register(BlueprintVersion)
class BlueprintVersionAdmin(admin.ModelAdmin):
    """View-only: published versions are immutable."""

    list_display = ["__str__", "digest", "published_by", "published_at"]
    list_filter = ["blueprint__company"]
    search_fields = ["blueprint__name", "digest"]
    fields = ["blueprint", "number", "digest", "published_by", "published_at", "pretty_document"]
    readonly_fields = fields

    @admin.display(description="document")
    def pretty_document(self, obj) -> str:
        return _pretty(obj.document)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class JobTemplateForm(forms.ModelForm):
    class Meta:
        model = JobTemplate
        fields = ["company", "name", "step_type", "description", "defaults", "param_schema"]

    def clean(self):
        # Run the service's checks here so problems show on the form, not as a server error.
        cleaned = super().clean()
        if self.errors:
            return cleaned
        from controlplane.catalog.validation import job_template_errors

        for error in job_template_errors(defaults=cleaned.get("defaults"), param_schema=cleaned.get("param_schema")):
            field = error["path"].split(".", 1)[0]
            self.add_error(field if field in self.fields else None, f"{error['path']}: {error['message']}")
        return cleaned


@admin.register(JobTemplate)
class JobTemplateAdmin(admin.ModelAdmin):
    form = JobTemplateForm
    list_display = ["name", "company", "step_type", "updated_at"]
    list_filter = ["company", "step_type"]
    search_fields = ["name", "description"]

    def save_model(self, request, obj, form, change):
        fields = {k: form.cleaned_data[k] for k in ("name", "step_type", "defaults", "param_schema", "description")}
        if change:
            services.job_template_update(template=obj, **fields)
        else:
            created = services.job_template_create(company=obj.company, **fields)
            obj.pk = created.pk
            obj.refresh_from_db()

    def delete_model(self, request, obj):
        services.job_template_delete(template=obj)

    def delete_queryset(self, request, queryset):
        for template in queryset:
            services.job_template_delete(template=template)


class SecretForm(forms.ModelForm):
    """`new_value` is write-only: never pre-filled, never rendered back, encrypted by the service."""

    new_value = forms.CharField(
        label="New value",
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Write-only. Enter a value to set it (or rotate it); leave empty to keep the current value.",
    )

    class Meta:
        model = Secret
        fields = ["company", "name"]

    def clean(self):
        cleaned = super().clean()
        if self.instance.pk is None and not cleaned.get("new_value"):
            self.add_error("new_value", "a new secret needs a value")
        return cleaned


@admin.register(Secret)
class SecretAdmin(admin.ModelAdmin):
    form = SecretForm
    list_display = ["name", "company", "created_by", "updated_at", "rotated_at"]
    list_filter = ["company"]
    search_fields = ["name"]
    fields = ["company", "name", "new_value", "created_by", "created_at", "updated_at", "rotated_at"]
    readonly_fields = ["created_by", "created_at", "updated_at", "rotated_at"]

    def get_queryset(self, request):
        return super().get_queryset(request).defer("ciphertext")

    def get_readonly_fields(self, request, obj=None):
        if obj is not None:  # the name is what graphs refer to: rotate values, don't rename
            return ["company", "name", *self.readonly_fields]
        return self.readonly_fields

    def save_model(self, request, obj, form, change):
        value = form.cleaned_data.get("new_value")
        if not value:
            return  # nothing but read-only fields on a change: keep the current value
        try:
            secret, _created = services.secret_set(company=obj.company, name=obj.name, value=value, user=request.user)
        except ApplicationError as exc:  # concurrent create: report it without the value
            raise forms.ValidationError(exc.detail) from None
        obj.pk = secret.pk
        obj.refresh_from_db()

    def delete_model(self, request, obj):
        services.secret_delete(secret=obj)

    def delete_queryset(self, request, queryset):
        for secret in queryset:
            services.secret_delete(secret=secret)
