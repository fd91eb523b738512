"""Step types API: every registered type with its config JSON Schema, paged, signed-in only."""
from __future__ import annotations

import pytest
from jsonschema import Draft202012Validator
from rest_framework.test import APIClient

from pipelines.steps import get_step_type, step_type_names

pytestmark = pytest.mark.django_db


def test_list_pages_every_registered_type(client_for, owner):
    response = client_for(owner).get("/api/v1/step-types", {"limit": 3})

    assert response.status_code == 200
    assert response.data["count"] == len(step_type_names())
    assert [t["name"] for t in response.data["results"]] == list(step_type_names())[:3]
    assert response.data["next"] is not None


def test_detail_publishes_the_schema_the_validator_checks(client_for, owner):
    response = client_for(owner).get("/api/v1/step-types/http")

    assert response.status_code == 200
    body = response.json()
    assert body["name"] == "http" and body["side_effect_free"] is False and body["description"]
    schema = body["config_schema"]
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["required"] == ["url"] and schema["additionalProperties"] is False
    assert schema["properties"]["method"]["enum"][:2] == ["GET", "POST"]
    assert schema == get_step_type("http").config_json_schema()


@pytest.mark.parametrize("name, side_effect_free", [("noop", True), ("jq", True), ("delay", False), ("notify", False)])
def test_detail_says_whether_the_step_has_side_effects(client_for, owner, name, side_effect_free):
    body = client_for(owner).get(f"/api/v1/step-types/{name}").json()

    assert body["side_effect_free"] is side_effect_free


def test_notify_is_listed_with_its_channels(client_for, owner):
    body = client_for(owner).get("/api/v1/step-types/notify").json()

    schema = body["config_schema"]
    Draft202012Validator.check_schema(schema)
    assert schema["required"] == ["channel"]
    assert schema["properties"]["channel"]["enum"] == ["slack", "email"]
    assert {"webhook", "text", "blocks", "to", "subject", "body"} <= set(schema["properties"])


def test_unknown_type_is_a_404_in_the_error_shape(client_for, owner):
    response = client_for(owner).get("/api/v1/step-types/teleport")

    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    assert "teleport" in response.json()["detail"]


@pytest.mark.parametrize("url", ["/api/v1/step-types", "/api/v1/step-types/http"])
def test_anonymous_clients_are_refused(url):
    assert APIClient().get(url).status_code == 401


def test_bad_page_bounds_are_refused_like_other_lists(client_for, owner):
    response = client_for(owner).get("/api/v1/step-types", {"limit": 0})

    assert response.status_code == 400
    assert response.json()["path"] == "limit"


def test_openapi_schema_documents_both_routes_paged(tmp_path):
    import yaml
    from django.core.management import call_command

    target = tmp_path / "schema.yml"
    call_command("spectacular", "--file", str(target), "--validate", "--fail-on-warn")
    paths = yaml.safe_load(target.read_text())["paths"]

    listing = paths["/api/v1/step-types"]["get"]
    assert {p["name"] for p in listing["parameters"]} >= {"limit", "offset"}
    assert "/api/v1/step-types/{type}" in paths
