"""Hostile requests are refused cheaply and in the JSON error shape; the API's answers are honest.

Given / when / then: a member (or nobody) sends a hostile body, a bad credential, an unknown
route or an out-of-range page; the answer is a 4xx in `{"error", "detail", "path"}` naming what
was wrong and where, within milliseconds (each test is bounded loosely by a timeout).
"""
from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

from controlplane.core.exceptions import api_exception_handler
from tests.factories import make_version
from tests.pipelines.test_document_limits import billion_laughs

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(60)]

API = "/api/v1"


def error_of(response, status: int, error: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert {"error", "detail", "path"} <= set(body), body
    assert body["error"] == error, body
    return body


def yaml_draft(client, workflow, text: str):
    return client.generic(
        "PUT", f"{API}/workflows/{workflow.id}", text, content_type="application/yaml", HTTP_IF_MATCH='"1"'
    )


# YAML bombs, deep nesting, huge node counts ------------------------------------------------------


@pytest.mark.parametrize("levels", [3, 6, 9])
def test_a_yaml_bomb_body_is_refused_naming_the_alias_budget(levels, owner, workflow, client_for):
    # given a "billion laughs" draft as a YAML body: `graph:` holding the bomb
    text = "graph:\n" + "".join(f"  {line}\n" for line in billion_laughs(levels).splitlines())

    # when the owner PUTs it
    response = yaml_draft(client_for(owner), workflow, text)

    # then it is a 400 naming the limit, its setting and where it was crossed; nothing was stored
    body = error_of(response, 400, "limit_exceeded")
    assert body["limit"] == "max_alias_nodes" and body["setting"] == "API_MAX_YAML_ALIAS_NODES"
    assert body["path"] == "graph.lol3[4]"
    workflow.refresh_from_db()
    assert workflow.draft_revision == 1


@pytest.mark.parametrize("levels", [3, 9])
def test_a_yaml_bomb_inside_a_json_string_is_refused_with_its_path_under_graph(levels, owner, workflow, client_for):
    response = client_for(owner).put(
        f"{API}/workflows/{workflow.id}", {"graph": billion_laughs(levels)}, format="json", HTTP_IF_MATCH='"1"'
    )
    body = error_of(response, 400, "limit_exceeded")
    assert body["limit"] == "max_alias_nodes"
    assert body["path"] == "graph.lol3[4]"


@pytest.mark.parametrize("content_type", ["application/json", "application/yaml"])
@pytest.mark.parametrize("depth", [65, 100_000])
def test_deep_nesting_is_refused_naming_the_depth_limit(content_type, depth, owner, workflow, client_for):
    raw = '{"graph": {"nodes": ' + "[" * depth + "]" * depth + "}}"
    response = client_for(owner).generic(
        "PUT", f"{API}/workflows/{workflow.id}", raw, content_type=content_type, HTTP_IF_MATCH='"1"'
    )
    body = error_of(response, 400, "limit_exceeded")
    assert body["limit"] == "max_depth" and body["setting"] == "API_MAX_DOCUMENT_DEPTH"
    if depth < 1_000:  # beyond, json's and libyaml's C decoders refuse first, without a path
        assert body["path"] == "graph.nodes" + "[0]" * 63


@pytest.mark.parametrize("url", ["/projects", "/companies", "/executions", "/plans", "/worker-groups", "/secrets"])
def test_every_json_body_is_held_to_the_depth_limit(url, owner, company, client_for):
    # given a body whose unknown field nests 70 levels (a serializer would ignore the field)
    raw = json.dumps({"company": company.id, "slug": "deep", "name": "Deep", "junk": [[[[[[[[[[1]]]]]]]]]]})
    raw = raw.replace("[[[[[[[[[[1]]]]]]]]]]", "[" * 70 + "1" + "]" * 70)

    response = client_for(owner).post(API + url, raw, content_type="application/json")

    body = error_of(response, 400, "limit_exceeded")
    assert body["path"] == "junk" + "[0]" * 64


@pytest.mark.parametrize("content_type", ["application/json", "application/yaml"])
def test_a_huge_node_count_is_refused_naming_the_node_limit(content_type, owner, workflow, client_for, settings):
    # given a limit of 1,000 values and a body of a few thousand
    settings.API_MAX_DOCUMENT_NODES = 1_000
    nodes = [{"id": f"n{i}", "type": "noop"} for i in range(600)]
    raw = json.dumps({"graph": {"nodes": nodes, "edges": []}})

    response = client_for(owner).generic(
        "PUT", f"{API}/workflows/{workflow.id}", raw, content_type=content_type, HTTP_IF_MATCH='"1"'
    )

    body = error_of(response, 400, "limit_exceeded")
    assert body["limit"] == "max_nodes" and body["setting"] == "API_MAX_DOCUMENT_NODES"
    assert body["path"].startswith("graph.nodes[")


def test_a_graph_of_too_many_values_is_refused_at_the_default_limit(owner, workflow, client_for):
    nodes = [{"id": f"n{i}"} for i in range(70_000)]  # 210,000 values in about 1 MB
    raw = json.dumps({"graph": {"nodes": nodes, "edges": []}})
    response = client_for(owner).generic(
        "PUT", f"{API}/workflows/{workflow.id}", raw, content_type="application/json", HTTP_IF_MATCH='"1"'
    )
    assert error_of(response, 400, "limit_exceeded")["limit"] == "max_nodes"


def test_aliases_within_the_budget_are_accepted(owner, workflow, client_for):
    text = (
        "graph:\n  nodes:\n"
        "    - {id: a, type: log, config: &say {message: hi}}\n"
        "    - {id: b, type: log, config: *say}\n"
        "  edges: [{from: a, to: b}]\n"
    )
    response = yaml_draft(client_for(owner), workflow, text)
    assert response.status_code == 200, response.content
    assert response.json()["graph"]["nodes"][1]["config"] == {"message": "hi"}


# Body size ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["application/json", "application/yaml", "text/plain"])
def test_a_body_beyond_the_size_limit_is_413_json(content_type, owner, workflow, client_for, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024
    raw = json.dumps({"graph": {"nodes": [], "edges": []}, "description": "x" * 100_000})
    response = client_for(owner).generic(
        "PATCH", f"{API}/workflows/{workflow.id}", raw, content_type=content_type, HTTP_IF_MATCH='"1"'
    )
    body = error_of(response, 413, "payload_too_large")
    assert "API_MAX_BODY_BYTES" in body["detail"]


def test_a_5mb_body_at_the_default_limit_is_413_json(owner, client_for):
    response = client_for(owner).generic(
        "POST", f"{API}/companies", b"{" + b" " * (5 * 1024 * 1024) + b"}", content_type="application/json"
    )
    error_of(response, 413, "payload_too_large")


def test_a_view_reading_request_body_beyond_the_limit_gets_413_from_the_handler():
    from django.core.exceptions import RequestDataTooBig

    response = api_exception_handler(RequestDataTooBig("too big"), {})
    assert response.status_code == 413
    assert response.data["error"] == "payload_too_large"


def test_outside_the_api_the_size_limit_is_djangos(owner, settings, client):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    response = client.generic("POST", "/admin/login/", "x" * 4096, content_type="text/plain")
    assert response.status_code != 413


# Authentication ----------------------------------------------------------------------------------


@pytest.mark.parametrize("header", [None, "Token not-a-token", "Token ", "Bearer abc", "Token a b"])
@pytest.mark.parametrize("method,url", [("GET", "/companies"), ("POST", "/projects"), ("GET", "/workflows/1")])
def test_a_missing_or_bad_credential_is_401_with_a_token_challenge(header, method, url, db):
    client = APIClient()
    if header is not None:
        client.credentials(HTTP_AUTHORIZATION=header)
    response = client.generic(method, API + url)
    expected = "not_authenticated" if header in (None, "Bearer abc") else "authentication_failed"
    error_of(response, 401, expected)
    assert response["WWW-Authenticate"] == 'Token realm="api"'


def test_a_signed_in_operator_session_still_reads_the_api(owner, client):
    client.force_login(owner)
    assert client.get(f"{API}/companies").status_code == 200


def test_a_session_write_without_its_csrf_token_is_403(owner):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    response = client.post(f"{API}/companies", {"slug": "x", "name": "X"}, content_type="application/json")
    error_of(response, 403, "forbidden")


# Unknown routes and methods ----------------------------------------------------------------------


@pytest.mark.parametrize("debug", [True, False], ids=["DEBUG=1", "DEBUG=0"])
@pytest.mark.parametrize("url", ["/api/v1/nope", "/api/v1/workflows/abc", "/api/v2/companies", "/api/", "/api/v1/workflows/1/nope"])
def test_unknown_api_routes_are_json_404_also_under_debug(debug, url, owner, client_for, settings):
    settings.DEBUG = debug
    body = error_of(client_for(owner).get(url), 404, "not_found")
    assert url in body["detail"]


def test_pages_outside_the_api_keep_their_html_404(owner, client, settings):
    settings.DEBUG = True
    client.force_login(owner)
    response = client.get("/no-such-page")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


def test_a_method_a_route_does_not_have_is_405_json_with_allow(owner, workflow, client_for):
    version = make_version(workflow, user=owner)
    response = client_for(owner).delete(f"{API}/versions/{version.id}")
    error_of(response, 405, "method_not_allowed")
    assert "GET" in response["Allow"]


# Pagination and filters --------------------------------------------------------------------------

LISTS = ["/companies", "/projects", "/workflows", "/worker-groups", "/workers", "/executions", "/dead-letters",
         "/deployments", "/blueprints", "/job-templates", "/secrets"]


@pytest.mark.parametrize("query,path", [
    ("limit=abc", "limit"), ("limit=0", "limit"), ("limit=-1", "limit"), ("limit=501", "limit"),
    ("limit=1.5", "limit"), ("limit=", "limit"), ("offset=-1", "offset"), ("offset=x", "offset"),
    ("offset=99999999999999999999", "offset"), ("limit=%EF%BC%91", "limit"),
])
@pytest.mark.parametrize("url", LISTS)
def test_invalid_limit_or_offset_is_400_naming_the_parameter(url, query, path, owner, client_for):
    body = error_of(client_for(owner).get(f"{API}{url}?{query}"), 400, "invalid")
    assert body["path"] == path


@pytest.mark.parametrize("url", LISTS)
def test_a_valid_page_answers_count_next_previous_results(url, owner, company, client_for):
    body = client_for(owner).get(f"{API}{url}?limit=1&offset=0").json()
    assert set(body) == {"count", "next", "previous", "results"}
    assert len(body["results"]) <= 1


@pytest.mark.parametrize("url,path", [
    ("/deployments?workflow=abc", "workflow"), ("/deployments?status=sleeping", "status"),
    ("/deployments?environment=no%20spaces", "environment"), ("/blueprints?company=abc", "company"),
    ("/job-templates?company=-3", "company"), ("/secrets?company=99999999999999999999999", "company"),
    ("/executions?status=sleeping", "status"), ("/dead-letters?execution=not-a-uuid", "execution"),
    ("/workflows?project=x", "project"), ("/workers?group=x", "group"),
    ("/executions?workflow=99999999999999999999999", "workflow"), ("/deployments?workflow=0", "workflow"),
    ("/executions?created_after=yesterday", "created_after"),
])
def test_invalid_filters_are_400_naming_the_parameter(url, path, owner, client_for):
    body = error_of(client_for(owner).get(API + url), 400, "invalid")
    assert path in [body["path"], *[e["path"] for e in body.get("errors", [])]]


# The schema says so ------------------------------------------------------------------------------


@pytest.fixture
def schema(owner, client_for):
    response = client_for(owner).get(f"{API}/schema/?format=json")
    assert response.status_code == 200
    return response.json()


PAGINATED = ["/companies", "/companies/{company_id}/members", "/projects", "/workflows",
             "/workflows/{workflow_id}/versions", "/worker-groups", "/workers", "/executions", "/dead-letters",
             "/deployments", "/deployments/{deployment_id}/events", "/blueprints", "/blueprints/{id}/versions",
             "/job-templates", "/secrets"]


@pytest.mark.parametrize("path", PAGINATED)
def test_the_schema_documents_lists_as_pages_with_bounded_limit_and_offset(path, schema):
    operation = schema["paths"][API + path]["get"]
    ref = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    page = schema["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert set(page["properties"]) == {"count", "next", "previous", "results"}
    assert page["properties"]["results"]["type"] == "array"
    parameters = {p["name"]: p["schema"] for p in operation["parameters"] if p["in"] == "query"}
    assert parameters["limit"]["minimum"] == 1 and parameters["limit"]["maximum"] == 500
    assert parameters["offset"]["minimum"] == 0


def test_the_schema_lists_the_error_responses_with_the_error_component(schema):
    error = schema["components"]["schemas"]["Error"]
    assert set(error["required"]) == {"error", "detail", "path"}
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            codes = set(operation["responses"])
            where = f"{method.upper()} {path}"
            if path.startswith(f"{API}/schema"):
                continue
            assert "401" in codes, where
            # A webhook (no API credentials: it signs its body) has no token challenge and no role.
            signed = operation.get("security") == [{}]
            if not signed:
                assert operation["responses"]["401"]["headers"]["WWW-Authenticate"], where
            if "{" in path:
                assert "404" in codes, where
            if "requestBody" in operation:
                assert {"400", "413", "415"} <= codes, where
            if method in ("post", "put", "patch", "delete"):
                assert "403" in codes or signed, where
                assert "409" in codes or not any(code.startswith("2") for code in codes), where
            for code in (code for code in codes if not code.startswith("2")):  # 202: a dead letter continued
                assert operation["responses"][code]["content"]["application/json"]["schema"]["$ref"].endswith("/Error"), \
                    f"{where} {code}"


def test_the_schema_lists_412_and_428_where_if_match_is_required(schema):
    for method in ("put", "patch"):
        operation = schema["paths"][f"{API}/workflows/{{workflow_id}}"][method]
        assert {"412", "428"} <= set(operation["responses"])
        assert any(p["name"] == "If-Match" and p["required"] for p in operation["parameters"])
    publish = schema["paths"][f"{API}/workflows/{{workflow_id}}/publish"]["post"]
    assert "412" in publish["responses"] and "428" not in publish["responses"]


def test_the_schema_declares_what_text_fields_refuse(schema):
    company = schema["components"]["schemas"]["CompanyCreate"]["properties"]
    assert company["name"]["minLength"] == 1 and company["name"]["pattern"]
    assert company["slug"]["pattern"].startswith("^[a-z0-9]")
