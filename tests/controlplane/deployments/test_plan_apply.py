"""Plan and apply through the API: diff per job, stale plans, rollback, blueprints, landing, failures."""
from __future__ import annotations

import copy

import pytest

from controlplane.catalog.models import Blueprint
from controlplane.catalog.services import blueprint_publish, secret_create
from controlplane.deployments.models import Deployment, DeploymentEvent, DeploymentPlan, JobDeployment
from controlplane.deployments.selectors import (
    active_deployment_for,
    deployment_accepts_executions,
    deployment_execution_graph,
    deployment_for_execution,
)
from controlplane.core.errors import Conflict
from tests.controlplane.deployments.conftest import actions, publish, two_step_graph

pytestmark = pytest.mark.django_db


def test_first_plan_creates_every_job_and_apply_stores_artifacts(flow, workflow, owner):
    publish(workflow, two_step_graph(), user=owner)
    plan = flow.plan(1)
    assert actions(plan) == {"start": "create", "say": "create"}
    assert plan["summary"] == "2 to add, 0 to change, 0 to destroy, 0 to move"
    assert "+ say" in plan["text"] and plan["has_errors"] is False
    assert plan["plan"]["format_version"] == 1 and plan["base_revision"] == 0
    assert not Deployment.objects.exists()  # a plan has no side effect

    deployment = flow.apply(plan)
    assert deployment["status"] == "active" and deployment["version"] == 1 and deployment["revision"] == 1
    assert {j["job_id"]: j["group"] for j in deployment["jobs"]} == {"start": "ingest", "say": "ingest"}
    kinds = list(DeploymentEvent.objects.filter(deployment_id=deployment["id"]).values_list("kind", flat=True))
    assert kinds == ["applying", "job_staged", "job_staged", "applied"]
    assert DeploymentEvent.objects.get(kind="applied").actor == owner
    assert DeploymentPlan.objects.get(pk=plan["id"]).applied_at is not None


def _add(g):
    g["nodes"].append({"id": "extra", "type": "noop", "group": "ingest"})
    return g


def _remove(g):
    g["nodes"] = [n for n in g["nodes"] if n["id"] != "say"]
    g["edges"] = []
    return g


def _change(g):
    g["nodes"][1]["config"]["message"] = "changed"
    return g


def _replace(g):
    g["nodes"][1] = {"id": "say", "type": "noop", "group": "ingest"}
    return g


def _move(g):
    g["nodes"][1]["group"] = "batch"
    return g


@pytest.mark.parametrize(
    "edit, expected, fields, moved",
    [
        pytest.param(_add, {"extra": "create"}, {}, None, id="add"),
        pytest.param(_remove, {"say": "delete", "start": "update"}, {"start": ["downstream"]}, None, id="remove"),
        pytest.param(_change, {"say": "update"}, {"say": ["config.message"]}, None, id="change"),
        pytest.param(_replace, {"say": "replace"}, {}, None, id="replace"),
        pytest.param(_move, {"say": "update"}, {}, ("ingest", "batch"), id="move"),
    ],
)
def test_diff_through_the_api(flow, workflow, owner, edit, expected, fields, moved):
    publish(workflow, two_step_graph(), user=owner)
    flow.deploy(1)
    publish(workflow, edit(two_step_graph()), user=owner)
    plan = flow.plan(2)
    assert actions(plan) == expected
    changes = {c["job_id"]: c for c in plan["plan"]["changes"]}
    for job_id, expected_fields in fields.items():
        assert changes[job_id]["fields"] == expected_fields
    if moved:
        say = changes["say"]
        assert (say["moved_from"], say["moved_to"], say["disruptive"]) == (*moved, True)
        assert "~ say  moves ingest -> batch (disruptive)" in plan["text"] and "1 to move" in plan["text"]
    deployment = flow.apply(plan)
    jobs = {j["job_id"]: j for j in deployment["jobs"]}
    assert set(jobs) == {j["job_id"] for j in plan["plan"]["jobs"]}
    for job in plan["plan"]["jobs"]:
        assert (jobs[job["job_id"]]["digest"], jobs[job["job_id"]]["group"]) == (job["digest"], job["group"])
    again = flow.plan(2)
    assert actions(again) == {} and "No changes" in again["text"]


def test_a_stale_plan_gets_409(flow, workflow, owner):
    publish(workflow, two_step_graph(), user=owner)
    publish(workflow, two_step_graph("v2"), user=owner)
    first, second = flow.plan(1), flow.plan(2)
    flow.apply(first)
    body = flow.apply(second, status=409)
    assert (body["error"], body["path"]) == ("stale_plan", "plan")
    assert flow.apply(first, status=409)["error"] == "stale_plan"  # a plan applies once
    fresh = flow.plan(2)
    assert actions(fresh) == {"say": "update"}
    flow.apply(fresh)


def test_rollback_from_v3_to_v1_shows_the_reverse_diff_and_pins(flow, api, workflow, owner):
    v1 = two_step_graph()
    v3 = copy.deepcopy(v1)
    v3["nodes"].append({"id": "extra", "type": "noop", "group": "batch"})
    v3["edges"].append({"from": "say", "to": "extra"})
    v3["nodes"][1]["config"]["message"] = "v3"
    publish(workflow, v1, user=owner)
    publish(workflow, two_step_graph("v2"), user=owner)
    publish(workflow, v3, user=owner)
    flow.deploy(1)
    flow.deploy(2)
    forward = flow.plan(3)
    deployment = flow.apply(forward)
    response = api.post(f"/api/v1/deployments/{deployment['id']}/rollback", {"version": 1}, format="json")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["version"] == 1 and body["pinned"] is True and body["auto_reconcile"] is False
    assert body["id"] == deployment["id"] and body["revision"] == deployment["revision"] + 1
    assert actions(body["plan"]) == {"extra": "delete", "say": "update"}
    assert {j["job_id"] for j in body["jobs"]} == {"start", "say"}
    event = DeploymentEvent.objects.get(kind="rolled_back")
    assert (event.data["from_version"], event.data["to_version"], event.actor) == (3, 1, owner)
    # What runs now is v1's graph, byte for byte the artifacts v1 had.
    graph = deployment_execution_graph(Deployment.objects.get(pk=body["id"]))
    assert {j["id"]: j["config"] for j in graph["jobs"]} == {"start": {}, "say": {"message": "hello"}}


def test_blueprint_expansion_keeps_job_ids_stable_across_edits(flow, workflow, owner, company):
    blueprint = Blueprint.objects.create(company=company, name="fanout")
    document = {
        "params": {"message": {}},
        "inputs": [{"name": "in", "to": ["fetch"]}],
        "outputs": [{"name": "out", "from": "store"}],
        "nodes": [
            {"id": "fetch", "type": "log", "config": {"message": "{{ .params.message }}"}},
            {"id": "store", "type": "noop"},
        ],
        "edges": [{"from": "fetch", "to": "store"}],
    }
    blueprint_publish(blueprint=blueprint, document=document, user=owner)
    edited = copy.deepcopy(document)
    edited["nodes"][0]["config"]["level"] = "warning"
    blueprint_publish(blueprint=blueprint, document=edited, user=owner)

    def graph(ref):
        return {"nodes": [{"id": "start", "type": "noop", "group": "ingest"},
                          {"id": "harvest", "blueprint": ref, "group": "batch", "params": {"message": "hi"}}],
                "edges": [{"from": "start", "to": "harvest"}]}

    publish(workflow, graph("fanout@1"), user=owner)
    publish(workflow, graph("fanout@2"), user=owner)
    first = flow.plan(1)
    assert set(actions(first)) == {"start", "harvest/fetch", "harvest/store"}
    flow.apply(first)
    second = flow.plan(2)
    assert actions(second) == {"harvest/fetch": "update"}
    assert [c["fields"] for c in second["plan"]["changes"] if c["job_id"] == "harvest/fetch"] == [["config.level"]]


def test_landing_adapters_are_inserted_across_groups(flow, workflow, owner, settings):
    graph = {"nodes": [{"id": "extract", "type": "noop", "group": "ingest"},
                       {"id": "load", "type": "log", "group": "batch", "config": {"message": "{{ .steps }}"}}],
             "edges": [{"from": "extract", "to": "load", "delivery": "landing"}]}
    publish(workflow, graph, user=owner)
    deployment = flow.deploy(1)
    jobs = {j["job_id"]: j for j in deployment["jobs"]}
    write, read = jobs["extract->load/landing-write"], jobs["extract->load/landing-read"]
    assert (write["kind"], write["group"], read["kind"], read["group"]) == (
        "landing_write", "ingest", "landing_read", "batch")
    assert write["spec"]["config"]["store"] == settings.LANDING_STORE_URL
    execution = deployment_execution_graph(Deployment.objects.get(pk=deployment["id"]))
    assert {(e["from"], e["to"]) for e in execution["edges"]} == {
        ("extract", "extract->load/landing-write"),
        ("extract->load/landing-write", "extract->load/landing-read"),
        ("extract->load/landing-read", "load"),
    }
    assert {j["id"]: j["group"] for j in execution["jobs"]}["extract->load/landing-read"] == "batch"


@pytest.mark.parametrize(
    "graph, expected",
    [
        pytest.param(
            {"nodes": [{"id": "a", "type": "noop", "group": "ingest"},
                       {"id": "h", "blueprint": "fan@1", "group": "ingest"}], "edges": []},
            ("unbound_port", "nodes[1]"), id="channel-without-producer"),
        pytest.param(
            {"nodes": [{"id": "a", "type": "noop", "group": "ingest"}],
             "edges": [{"from": "a", "delivery": "landing"}]},
            ("unbound_channel", "edges[0].to"), id="landing-without-consumer"),
        pytest.param({"nodes": [{"id": "a", "type": "noop", "group": "gpu"}], "edges": []},
                     ("unknown_group", "nodes[0].group"), id="unknown-group"),
        pytest.param({"nodes": [{"id": "a", "type": "noop"}], "edges": []},
                     ("missing_group", "nodes[0].group"), id="missing-group"),
        pytest.param({"nodes": [{"id": "a", "type": "noop", "group": "empty"}], "edges": []},
                     ("no_live_worker", "nodes[0].group"), id="no-live-worker"),
        pytest.param({"nodes": [{"id": "a", "type": "http", "group": "ingest",
                                 "config": {"url": "https://x.test", "headers": {"A": {"$secret": "nope"}}}}],
                      "edges": []},
                     ("missing_secret", "nodes[0].config.headers.A"), id="missing-secret"),
        pytest.param({"nodes": [{"id": "h", "blueprint": "fan@1", "group": "ingest"}], "edges": []},
                     ("missing_param", "nodes[0].params.message"), id="missing-param"),
        pytest.param({"nodes": [{"id": "a", "type": "log", "group": "ingest", "config": {}}], "edges": []},
                     ("missing_config", "nodes[0].config.message"), id="missing-config"),
        pytest.param({"nodes": [{"id": "a", "type": "http", "group": "batch", "config": {"url": "https://x.test"}}],
                      "edges": []},
                     ("unsupported_step_type", "nodes[0].type"), id="step-type-not-advertised"),
    ],
)
def test_each_planning_failure_has_its_code_and_path(api, flow, workflow, owner, company, fleet, graph, expected):
    from controlplane.fleet.services import worker_group_create
    from tests.controlplane.deployments.conftest import heartbeat

    worker_group_create(company=company, slug="empty")
    heartbeat("w-batch@test", [fleet["batch"].queues[0]], step_types=["noop", "log", "landing_read"])
    blueprint = Blueprint.objects.create(company=company, name="fan")
    blueprint_publish(blueprint=blueprint, user=owner, document={
        "params": {"message": {}}, "inputs": [{"name": "in", "to": ["x"]}], "outputs": [],
        "nodes": [{"id": "x", "type": "log", "config": {"message": "{{ .params.message }}"}}], "edges": []})
    publish(workflow, graph, user=owner)
    plan = flow.plan(1)
    assert plan["has_errors"] is True
    assert expected in [(e["code"], e["path"]) for e in plan["plan"]["errors"]]
    assert f"Error: {expected[1]}: {expected[0]}" in plan["text"]
    body = flow.apply(plan, status=400)
    assert body["error"] == "plan_has_errors"
    assert expected in [(e["code"], e["path"]) for e in body["errors"]]
    assert DeploymentEvent.objects.filter(kind="failed").count() == 1
    assert not Deployment.objects.exists()


def test_capacity_warning_is_recorded_on_apply(flow, workflow, owner):
    publish(workflow, two_step_graph(), user=owner)
    plan = flow.plan(1, replicas={"say": 9})
    assert [w["code"] for w in plan["plan"]["warnings"]] == ["capacity"]
    deployment = flow.apply(plan)
    assert DeploymentEvent.objects.filter(deployment_id=deployment["id"], kind="warning").count() == 1


def test_secrets_never_appear_in_responses_artifacts_or_events(api, flow, workflow, owner, company):
    plaintext = "s3cr3t-PLAINTEXT-value-9f2c"
    secret_create(company=company, name="api-token", value=plaintext, user=owner)
    graph = {"nodes": [{"id": "call", "type": "http", "group": "ingest",
                        "config": {"url": "https://x.test", "headers": {"Authorization": {"$secret": "api-token"}}}}],
             "edges": []}
    publish(workflow, graph, user=owner)
    plan = flow.plan(1)
    deployment = flow.apply(plan)
    texts = [str(plan), str(deployment)]
    for url in [f"/api/v1/plans/{plan['id']}", f"/api/v1/deployments/{deployment['id']}",
                f"/api/v1/deployments/{deployment['id']}/events", "/api/v1/deployments", "/api/v1/workloads"]:
        response = api.get(url)
        assert response.status_code == 200
        texts.append(response.content.decode())
    response = api.post(f"/api/v1/deployments/{deployment['id']}/reconcile", {"dry_run": True}, format="json")
    texts.append(response.content.decode())
    from controlplane.deployments.services import desired_artifacts
    from controlplane.fleet.models import Worker

    texts.append(str(desired_artifacts(Worker.objects.get(hostname="w-ingest@test"))))
    texts += [str(jd.spec) for jd in JobDeployment.objects.all()]
    texts += [str(e.data) for e in DeploymentEvent.objects.all()]
    texts += [p.text + str(p.plan) for p in DeploymentPlan.objects.all()]
    assert all(plaintext not in text for text in texts)
    assert '{"$secret": "api-token"}' in str(JobDeployment.objects.get().spec).replace("'", '"')


def test_execution_integration_follows_the_lifecycle(api, flow, workflow, owner):
    publish(workflow, two_step_graph(), user=owner)
    assert active_deployment_for(workflow, "prod") is None
    deployment_id = flow.deploy(1)["id"]
    deployment = active_deployment_for(workflow, "prod")
    assert deployment.pk == deployment_id and deployment_accepts_executions(deployment)
    graph = deployment_execution_graph(deployment)
    assert [j["id"] for j in graph["jobs"]] == ["start", "say"]  # run order
    assert graph["edges"] == [{"from": "start", "to": "say", "branch": None}]
    assert graph["jobs"][1]["retry"]["max_attempts"] == 1

    assert api.post(f"/api/v1/deployments/{deployment_id}/pause").json()["status"] == "paused"
    paused = active_deployment_for(workflow, "prod")
    assert paused is not None and not deployment_accepts_executions(paused)
    with pytest.raises(Conflict) as refused:
        deployment_for_execution(workflow, "prod")
    assert refused.value.code == "deployment_paused"
    assert api.post(f"/api/v1/deployments/{deployment_id}/pause").status_code == 409
    assert api.post(f"/api/v1/deployments/{deployment_id}/resume").json()["status"] == "active"
    body = api.post(f"/api/v1/deployments/{deployment_id}/undeploy").json()
    assert body["status"] == "undeployed" and body["jobs"] == []
    assert active_deployment_for(workflow, "prod") is None
    with pytest.raises(Conflict) as refused:
        deployment_for_execution(workflow, "prod")
    assert refused.value.code == "not_deployed"
    kinds = list(DeploymentEvent.objects.filter(deployment_id=deployment_id).values_list("kind", flat=True))
    assert kinds[-3:] == ["paused", "resumed", "undeployed"]
    # Deploying again after an undeploy starts a new deployment row; history stays.
    plan = flow.plan(1)
    assert actions(plan) == {"start": "create", "say": "create"}
    new = flow.apply(plan)
    assert new["id"] != deployment_id and Deployment.objects.count() == 2


class TestConnectionBudget:
    """A plan warns when applying it could take the fleet past the database's connections."""

    def test_a_plan_within_the_budget_says_nothing(self, flow, workflow, owner):
        publish(workflow, two_step_graph(), user=owner)
        plan = flow.plan(1)
        assert not [w for w in plan["plan"]["warnings"] if w["code"] == "connection_budget"]

    def test_a_plan_past_it_warns_with_the_sum(self, flow, workflow, owner, settings):
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SHOW max_connections")
            max_connections = int(cursor.fetchone()[0])
        settings.DB_CONNECTION_HEADROOM = max_connections - 1  # one connection left for the fleet
        graph = two_step_graph()
        graph["nodes"][1]["replicas"] = 3  # apply would grow the pool, within WORKER_MAX_POOL_SIZE
        publish(workflow, graph, user=owner)

        plan = flow.plan(1)

        (warning,) = [w for w in plan["plan"]["warnings"] if w["code"] == "connection_budget"]
        assert warning["path"] == "fleet"
        assert "server allows 1" in warning["message"] and "pool growth for its replicas" in warning["message"]
        assert "connection_budget" in plan["text"] or "database connections" in plan["text"]
        assert plan["has_errors"] is False  # a warning: the operator decides
