"""Reads of the catalog: tenant-scoped lookups for the API, and plain documents for the planner.

Lookups take the caller and only see the caller's companies: another tenant's object is
`NotFound`, exactly like one that does not exist.
"""
from __future__ import annotations

from django.db.models import Count, Max, QuerySet

from controlplane.catalog.models import Blueprint, BlueprintVersion, JobTemplate, Secret
from controlplane.tenancy.access import company_scoped, get_visible


# -- blueprints ---------------------------------------------------------------------------------


def blueprint_list(*, user, company_id=None) -> QuerySet[Blueprint]:
    """The caller's blueprints with `version_count` and `latest_version` (number or None)."""
    queryset = Blueprint.objects.select_related("company").annotate(
        version_count=Count("versions"), latest_version=Max("versions__number")
    )
    return company_scoped(queryset, user, company_id).order_by("company__slug", "name")


def blueprint_get(*, user, blueprint_id) -> Blueprint:
    return get_visible(blueprint_list(user=user), blueprint_id, "blueprint")


def blueprint_version_list(*, blueprint: Blueprint) -> QuerySet[BlueprintVersion]:
    return BlueprintVersion.objects.filter(blueprint=blueprint).select_related("blueprint", "published_by").order_by("number")


def blueprint_versions_visible(*, user) -> QuerySet[BlueprintVersion]:
    """Every version of the caller's companies' blueprints."""
    queryset = BlueprintVersion.objects.select_related("blueprint", "published_by")
    return company_scoped(queryset, user, field="blueprint__company_id").order_by("blueprint_id", "number")


def blueprint_version_get(*, user, version_id) -> BlueprintVersion:
    return get_visible(blueprint_versions_visible(user=user), version_id, "blueprint version")


def blueprint_documents(company_id: int) -> dict[tuple[str, int], dict]:
    """Every published blueprint document of the company, keyed by `(name, number)`."""
    rows = BlueprintVersion.objects.filter(blueprint__company_id=company_id).values_list(
        "blueprint__name", "number", "document"
    )
    return {(name, number): document for name, number, document in rows}


# -- job templates ------------------------------------------------------------------------------


def job_template_list(*, user, company_id=None) -> QuerySet[JobTemplate]:
    return company_scoped(JobTemplate.objects.select_related("company"), user, company_id).order_by("company__slug", "name")


def job_template_get(*, user, template_id) -> JobTemplate:
    return get_visible(job_template_list(user=user), template_id, "job template")


def job_template_documents(company_id: int) -> dict[str, dict]:
    """The company's templates as the planner reads them: `{name: {type, config, param_schema}}`."""
    rows = JobTemplate.objects.filter(company_id=company_id).values_list("name", "step_type", "defaults", "param_schema")
    return {
        name: {"type": step_type, "config": defaults or {}, "param_schema": param_schema or {}}
        for name, step_type, defaults, param_schema in rows
    }


# -- secrets ------------------------------------------------------------------------------------


def secret_list(*, user, company_id=None) -> QuerySet[Secret]:
    """Secret metadata only: the ciphertext column is deferred and never reaches a serializer."""
    queryset = Secret.objects.select_related("company", "created_by").defer("ciphertext")
    return company_scoped(queryset, user, company_id).order_by("company__slug", "name")


def secret_get(*, user, secret_id) -> Secret:
    return get_visible(secret_list(user=user), secret_id, "secret")


def secret_names(company_id: int) -> frozenset[str]:
    """Names of the company's secrets, for the planner's missing-secret check."""
    return frozenset(Secret.objects.filter(company_id=company_id).values_list("name", flat=True))
