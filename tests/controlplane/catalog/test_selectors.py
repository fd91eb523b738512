"""What the planner reads from the catalog, and what the OpenAPI schema promises."""
from __future__ import annotations

import pytest
from django.urls import include, path
from drf_spectacular.generators import SchemaGenerator

from controlplane.catalog import selectors

pytestmark = pytest.mark.django_db


def test_planner_documents_are_per_company(version, job_template, secret, company, outsider):
    other = outsider.memberships.get().company

    assert selectors.blueprint_documents(company.pk) == {("fanout-ingest", 1): version.document}
    assert selectors.job_template_documents(company.pk) == {
        "http-get": {
            "type": "http",
            "config": {"method": "GET", "url": "{{ .params.url }}"},
            "param_schema": {"url": {"type": "string", "required": True}},
        }
    }
    assert selectors.secret_names(company.pk) == frozenset({"api.token"})
    assert (selectors.blueprint_documents(other.pk), selectors.job_template_documents(other.pk)) == ({}, {})
    assert selectors.secret_names(other.pk) == frozenset()


def test_schema_has_the_secret_value_write_only():
    generator = SchemaGenerator(patterns=[path("api/v1/", include("controlplane.catalog.urls"))])
    components = generator.get_schema(request=None, public=True)["components"]["schemas"]

    assert "value" not in components["SecretOut"]["properties"]
    assert components["SecretCreateIn"]["properties"]["value"]["writeOnly"] is True
    assert components["SecretRotateIn"]["properties"]["value"]["writeOnly"] is True
