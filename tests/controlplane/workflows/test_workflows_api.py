"""Workflows API: drafts with ETag / If-Match, validation, publishing and version diffs."""
from __future__ import annotations

import pytest

from controlplane.workflows.models import Workflow, WorkflowVersion
from tests.factories import make_version, make_workflow, valid_graph

pytestmark = pytest.mark.django_db

API = "/api/v1"


def node(node_id, step_type="noop", **fields):
    return {"id": node_id, "type": step_type, **fields}


def edge(src, dst):
    return {"from": src, "to": dst}


@pytest.fixture
def api(owner, client_for):
    return client_for(owner)


def put_graph(api, workflow_id, graph, revision):
    return api.put(f"{API}/workflows/{workflow_id}", {"graph": graph}, format="json", HTTP_IF_MATCH=f'"{revision}"')


# Creating and reading ----------------------------------------------------------------------------


def test_create_then_read_returns_the_draft_its_validation_and_an_etag(api, project):
    # when a workflow is created without a graph
    created = api.post(f"{API}/workflows", {"project": project.id, "slug": "etl", "name": "ETL"}, format="json")

    # then it starts as an empty draft at revision 1
    assert created.status_code == 201, created.content
    assert created["ETag"] == '"1"'
    body = created.json()
    assert body["graph"] == {"nodes": [], "edges": []}
    assert (body["status"], body["revision"], body["version_count"], body["latest_version"]) == ("draft", 1, 0, None)
    assert body["validation"]["ok"] is False
    assert [i["code"] for i in body["validation"]["issues"]] == ["empty_graph"]

    # and reading it gives the same ETag
    read = api.get(f"{API}/workflows/{body['id']}")
    assert read.status_code == 200
    assert read["ETag"] == '"1"'
    assert read.json()["created_by"] == "owner"


def test_create_accepts_a_yaml_body(api, project):
    yaml_body = f"""
project: {project.id}
slug: from-yaml
name: From YAML
graph:
  nodes:
    - {{id: start, type: noop}}
    - id: say
      type: log
      config: {{message: hi}}
  edges:
    - {{from: start, to: say}}
"""
    response = api.generic("POST", f"{API}/workflows", yaml_body, content_type="application/yaml")
    assert response.status_code == 201, response.content
    assert response.json()["validation"] == {"ok": True, "issues": []}


def test_the_graph_may_be_sent_as_yaml_text_in_a_json_string(api, workflow):
    text = "nodes:\n  - {id: only, type: noop}\nedges: []\n"
    response = put_graph(api, workflow.id, text, 1)
    assert response.status_code == 200, response.content
    assert response.json()["graph"] == {"nodes": [{"id": "only", "type": "noop"}], "edges": []}


def test_yaml_values_that_json_cannot_hold_are_400_with_their_path(api, workflow):
    yaml_body = 'graph:\n  nodes: [{id: a, type: noop, config: {when: 2024-01-01}}]\n  edges: []\n'
    response = api.generic(
        "PUT", f"{API}/workflows/{workflow.id}", yaml_body, content_type="application/yaml", HTTP_IF_MATCH='"1"'
    )
    assert response.status_code == 400, response.content
    assert "graph.nodes[0].config.when" in [e["path"] for e in response.json()["errors"]]


def test_list_filters_by_project_and_status(api, project, owner, company):
    from tests.factories import make_project

    other = make_project(company, "other")
    make_workflow(project, "one", user=owner)
    make_workflow(other, "two", user=owner)

    by_project = api.get(f"{API}/workflows?project={other.id}").json()["results"]
    by_status = api.get(f"{API}/workflows?status=archived").json()["results"]

    assert [w["slug"] for w in by_project] == ["two"]
    assert by_status == []


def test_a_duplicate_slug_is_409(api, workflow, project):
    response = api.post(f"{API}/workflows", {"project": project.id, "slug": "ingest", "name": "x"}, format="json")
    assert response.status_code == 409
    assert (response.json()["error"], response.json()["path"]) == ("slug_taken", "slug")


# ETag and If-Match -------------------------------------------------------------------------------


def test_writing_the_draft_with_the_current_etag_bumps_the_revision(api, workflow):
    response = put_graph(api, workflow.id, valid_graph(message="v2"), 1)

    assert response.status_code == 200, response.content
    assert response["ETag"] == '"2"'
    assert response.json()["revision"] == 2
    workflow.refresh_from_db()
    assert workflow.draft_graph["nodes"][1]["config"]["message"] == "v2"


def test_a_stale_if_match_is_412_with_the_current_revision(api, workflow):
    # given someone else saved revision 2
    put_graph(api, workflow.id, valid_graph(message="theirs"), 1)

    # when I save on top of revision 1
    response = put_graph(api, workflow.id, valid_graph(message="mine"), 1)

    # then I am told the draft moved on, and their work is kept
    assert response.status_code == 412
    body = response.json()
    assert (body["error"], body["path"], body["current_revision"]) == ("precondition_failed", "If-Match", 2)
    workflow.refresh_from_db()
    assert workflow.draft_graph["nodes"][1]["config"]["message"] == "theirs"


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_a_missing_if_match_is_428(api, workflow, method):
    response = api.generic(method, f"{API}/workflows/{workflow.id}", '{"graph": {"nodes": []}}',
                           content_type="application/json")
    assert response.status_code == 428
    assert (response.json()["error"], response.json()["path"]) == ("precondition_required", "If-Match")
    workflow.refresh_from_db()
    assert workflow.draft_revision == 1


@pytest.mark.parametrize("header,status", [('W/"1"', 200), ("1", 200), ("*", 200), ('"abc"', 400), ('"1", "2"', 400)])
def test_if_match_forms(api, workflow, header, status):
    response = api.patch(f"{API}/workflows/{workflow.id}", {"name": "Renamed"}, format="json", HTTP_IF_MATCH=header)
    assert response.status_code == status, response.content
    if status == 400:
        assert response.json()["path"] == "If-Match"


def test_patch_changes_only_the_fields_sent(api, workflow):
    response = api.patch(f"{API}/workflows/{workflow.id}", {"description": "nightly"}, format="json",
                         HTTP_IF_MATCH='"1"')
    assert response.status_code == 200
    body = response.json()
    assert (body["description"], body["name"], body["graph"]) == ("nightly", "Ingest", valid_graph())


def test_an_invalid_draft_is_saved_and_its_issues_are_reported(api, workflow):
    # when a half-written graph is saved
    response = put_graph(api, workflow.id, {"nodes": [node("a"), node("b")], "edges": [edge("a", "ghost")]}, 1)

    # then the work is kept and the problems are listed with their paths
    assert response.status_code == 200
    validation = response.json()["validation"]
    assert validation["ok"] is False
    assert [(i["path"], i["code"]) for i in validation["issues"]] == [("edges[0].to", "dangling_edge")]


# Validate ----------------------------------------------------------------------------------------


def test_validate_checks_a_sent_graph_without_saving_it(api, workflow):
    response = api.post(f"{API}/workflows/{workflow.id}/validate", {"graph": {"nodes": [], "edges": []}}, format="json")

    assert response.status_code == 200
    assert response.json() == {
        "ok": False,
        "issues": [{"path": "nodes", "message": "graph has no nodes; add at least one node", "code": "empty_graph"}],
    }
    workflow.refresh_from_db()
    assert (workflow.draft_revision, workflow.draft_graph) == (1, valid_graph())


def test_validate_without_a_body_checks_the_saved_draft(api, workflow, company, client_for):
    from controlplane.tenancy.models import Role
    from tests.factories import add_member

    viewer = add_member(company, role=Role.VIEWER)
    response = client_for(viewer).post(f"{API}/workflows/{workflow.id}/validate")
    assert response.status_code == 200
    assert response.json() == {"ok": True, "issues": []}


# Publish -----------------------------------------------------------------------------------------


def test_publish_creates_version_1_then_returns_it_while_the_draft_is_unchanged(api, workflow):
    first = api.post(f"{API}/workflows/{workflow.id}/publish")
    again = api.post(f"{API}/workflows/{workflow.id}/publish")

    assert first.status_code == 201, first.content
    assert again.status_code == 200
    assert first.json()["created"] is True and again.json()["created"] is False
    assert first.json()["id"] == again.json()["id"]
    assert first.json()["number"] == 1
    assert first.json()["digest"].startswith("sha256:")
    assert first["Location"] == f"/api/v1/versions/{first.json()['id']}"
    assert WorkflowVersion.objects.count() == 1
    assert api.get(f"{API}/workflows/{workflow.id}").json()["status"] == "active"


def test_reordering_keys_and_lists_is_not_a_new_version(api, workflow):
    api.post(f"{API}/workflows/{workflow.id}/publish")
    reordered = {"edges": [{"to": "say", "from": "start"}], "nodes": list(reversed(valid_graph()["nodes"]))}
    put_graph(api, workflow.id, reordered, 1)

    response = api.post(f"{API}/workflows/{workflow.id}/publish")

    assert response.status_code == 200
    assert response.json()["number"] == 1


def test_versions_are_numbered_without_gaps_and_listed_in_order(api, workflow):
    for revision, message in enumerate(["two", "three"], start=1):
        api.post(f"{API}/workflows/{workflow.id}/publish")
        put_graph(api, workflow.id, valid_graph(message=message), revision)
    api.post(f"{API}/workflows/{workflow.id}/publish")

    listed = api.get(f"{API}/workflows/{workflow.id}/versions").json()

    assert [v["number"] for v in listed["results"]] == [1, 2, 3]
    assert listed["count"] == 3
    detail = api.get(f"{API}/workflows/{workflow.id}").json()
    assert (detail["version_count"], detail["latest_version"]) == (3, 3)


def test_publish_with_a_stale_if_match_is_412(api, workflow):
    put_graph(api, workflow.id, valid_graph(message="newer"), 1)
    response = api.post(f"{API}/workflows/{workflow.id}/publish", HTTP_IF_MATCH='"1"')
    assert response.status_code == 412
    assert not WorkflowVersion.objects.exists()


INVALID_GRAPHS = {
    "empty": ({"nodes": [], "edges": []}, "nodes", "empty_graph"),
    "invalid-id": ({"nodes": [node("Bad Id")], "edges": []}, "nodes[0].id", "invalid_id"),
    "duplicate-id": ({"nodes": [node("a"), node("a")], "edges": []}, "nodes[1].id", "duplicate_id"),
    "dangling-edge": ({"nodes": [node("a")], "edges": [edge("a", "zz")]}, "edges[0].to", "dangling_edge"),
    "self-loop": ({"nodes": [node("a")], "edges": [edge("a", "a")]}, "edges[0]", "self_loop"),
    "cycle": ({"nodes": [node("a"), node("b")], "edges": [edge("a", "b"), edge("b", "a")]}, None, "cycle"),
    "unknown-type": ({"nodes": [node("a", "teleport")], "edges": []}, "nodes[0].type", "unknown_step_type"),
    "missing-config": ({"nodes": [node("a", "http")], "edges": []}, "nodes[0].config.url", "missing_config"),
    "notify-webhook-in-clear": (
        {"nodes": [node("a", "notify", config={"channel": "slack", "webhook": "https://hooks.example/T/B/x",
                                               "text": "hi"})], "edges": []},
        "nodes[0].config.webhook", "invalid_config",
    ),
    "notify-bad-recipient": (
        {"nodes": [node("a", "notify", config={"channel": "email", "to": ["ops@example.com", "nobody"],
                                               "subject": "s", "body": "b"})], "edges": []},
        "nodes[0].config.to[1]", "invalid_config",
    ),
    "notify-missing-subject": (
        {"nodes": [node("a", "notify", config={"channel": "email", "to": ["ops@example.com"], "body": "b"})],
         "edges": []},
        "nodes[0].config.subject", "missing_config",
    ),
    "invalid-jq": (
        {"nodes": [node("a", "log", config={"message": "{{ .foo | }}"})], "edges": []},
        "nodes[0].config.message",
        "invalid_jq",
    ),
}


@pytest.mark.parametrize("kind", list(INVALID_GRAPHS))
def test_publishing_an_invalid_graph_is_400_invalid_graph_with_paths(api, workflow, kind):
    # given a draft with one kind of problem
    graph, path, code = INVALID_GRAPHS[kind]
    assert put_graph(api, workflow.id, graph, 1).status_code == 200

    # when it is published
    response = api.post(f"{API}/workflows/{workflow.id}/publish")

    # then nothing is published and the problem is named with its path
    assert response.status_code == 400
    body = response.json()
    assert (body["error"], body["path"]) == ("invalid_graph", "graph")
    assert body["detail"]
    assert code in [e["code"] for e in body["errors"]]
    if path is not None:
        assert (path, code) in [(e["path"], e["code"]) for e in body["errors"]]
    assert all(set(e) == {"path", "message", "code"} for e in body["errors"])
    assert not WorkflowVersion.objects.exists()


def test_an_archived_workflow_refuses_edits_and_publishing(api, workflow):
    api.post(f"{API}/workflows/{workflow.id}/publish")
    assert api.post(f"{API}/workflows/{workflow.id}/status", {"status": "archived"}, format="json").status_code == 200

    edit = put_graph(api, workflow.id, valid_graph(message="late"), 1)
    publish = api.post(f"{API}/workflows/{workflow.id}/publish")

    assert (edit.status_code, edit.json()["error"]) == (409, "workflow_archived")
    assert (publish.status_code, publish.json()["error"]) == (409, "workflow_archived")


@pytest.mark.parametrize("published,status,expected", [
    (False, "active", 409), (False, "archived", 200), (True, "draft", 409), (True, "paused", 200),
])
def test_status_transitions(api, workflow, published, status, expected):
    if published:
        api.post(f"{API}/workflows/{workflow.id}/publish")
    response = api.post(f"{API}/workflows/{workflow.id}/status", {"status": status}, format="json")
    assert response.status_code == expected, response.content


def test_deleting_a_workflow_is_allowed_only_before_it_is_published(api, project, owner, workflow):
    scratch = make_workflow(project, "scratch", user=owner)
    make_version(workflow, user=owner)

    assert api.delete(f"{API}/workflows/{scratch.id}").status_code == 204
    refused = api.delete(f"{API}/workflows/{workflow.id}")
    assert (refused.status_code, refused.json()["error"]) == (409, "has_versions")
    assert Workflow.objects.filter(pk=workflow.pk).exists()


# Versions and diff -------------------------------------------------------------------------------


@pytest.fixture
def two_versions(workflow, owner):
    v1 = make_version(workflow, user=owner)
    graph = valid_graph(message="changed")
    graph["nodes"].append(node("extra"))
    graph["edges"].append(edge("say", "extra"))
    v2 = make_version(Workflow.objects.get(pk=workflow.pk), user=owner, graph=graph)
    return v1, v2


def test_version_detail_holds_the_frozen_graph(api, two_versions):
    v1, _ = two_versions
    body = api.get(f"{API}/versions/{v1.id}").json()
    assert (body["number"], body["graph"], body["published_by"]) == (1, valid_graph(), "owner")


def test_diff_reports_what_changed_from_against_to_the_version(api, two_versions):
    v1, v2 = two_versions

    response = api.get(f"{API}/versions/{v2.id}/diff?against={v1.id}")

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["from"]["number"], body["to"]["number"]) == (1, 2)
    assert body["diff"]["nodes_added"] == ["extra"]
    assert body["diff"]["nodes_removed"] == []
    assert body["diff"]["nodes_changed"] == [{"id": "say", "fields": ["config.message"]}]
    assert body["diff"]["edges_added"] == [{"from": "say", "to": "extra"}]
    assert body["summary"].startswith("1 node added, 1 changed, 0 removed")
    assert body["empty"] is False


def test_a_version_diffed_against_itself_is_empty(api, two_versions):
    v1, _ = two_versions
    body = api.get(f"{API}/versions/{v1.id}/diff?against={v1.id}").json()
    assert (body["empty"], body["summary"]) == (True, "no changes")


def test_diff_against_a_missing_version_is_404_naming_against(api, two_versions):
    _, v2 = two_versions
    response = api.get(f"{API}/versions/{v2.id}/diff?against=999999")
    assert response.status_code == 404
    assert response.json()["path"] == "against"


@pytest.fixture
def other_workflows_version(project, owner):
    """Given another workflow of the same project with one version (its id differs from its number)."""
    other = make_workflow(project, "other", user=owner)
    return make_version(other, user=owner)


def test_diff_by_id_refuses_a_version_of_another_workflow(api, two_versions, other_workflows_version):
    _, v2 = two_versions

    response = api.get(f"{API}/versions/{v2.id}/diff?against={other_workflows_version.id}")

    assert response.status_code == 400, response.content
    assert (response.json()["error"], response.json()["path"]) == ("other_workflow", "against")
    assert f"/workflows/{v2.workflow_id}/versions/2/diff" in response.json()["detail"]


def test_diff_by_number_compares_versions_of_the_workflow_in_the_url(api, two_versions, other_workflows_version):
    v1, v2 = two_versions

    response = api.get(f"{API}/workflows/{v2.workflow_id}/versions/2/diff?against=1")

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["from"]["id"], body["to"]["id"]) == (v1.id, v2.id)
    assert body["diff"]["nodes_added"] == ["extra"] and body["empty"] is False
    same = api.get(f"{API}/workflows/{other_workflows_version.workflow_id}/versions/1/diff?against=1").json()
    assert (same["from"]["id"], same["empty"]) == (other_workflows_version.id, True)


@pytest.mark.parametrize(
    "number, against, status, path",
    [
        pytest.param(2, 3, 404, "against", id="unknown-against"),
        pytest.param(3, 1, 404, "number", id="unknown-number"),
        pytest.param(2**40, 1, 404, "number", id="number-too-big-for-the-column"),
        pytest.param(2, "x", 400, "against", id="against-not-a-number"),
        pytest.param(2, 2**40, 400, "against", id="against-too-big"),
        pytest.param(2, 0, 400, "against", id="against-zero"),
    ],
)
def test_diff_by_number_bad_input(api, two_versions, number, against, status, path):
    _, v2 = two_versions

    response = api.get(f"{API}/workflows/{v2.workflow_id}/versions/{number}/diff?against={against}")

    assert response.status_code == status, response.content
    assert response.json()["path"] == path


def test_diff_by_number_of_another_tenants_workflow_is_404(two_versions, outsider, client_for):
    _, v2 = two_versions

    response = client_for(outsider).get(f"{API}/workflows/{v2.workflow_id}/versions/2/diff?against=1")

    assert response.status_code == 404 and response.json()["path"] == "workflow"
