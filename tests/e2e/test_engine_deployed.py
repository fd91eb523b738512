"""Executions of deployed workflows on real workers (groups `ingest` and `load`): rollback runs the
older version while a run started before stays pinned; landing edges move data between groups
through the landing store; paused and undeployed deployments refuse runs; dead letters replay on
what is deployed now."""
from __future__ import annotations

import json

import pytest

from controlplane.deployments.models import DeploymentEvent
from controlplane.executions.models import DeadLetter, ExecutionStatus, StepRun, StepStatus
from controlplane.workflows.models import Workflow
from tests.controlplane.deployments.conftest import Flow
from tests.controlplane.executions.builders import edges, job, make_version
from tests.e2e.engine_support import HOSTS, fleet, wait_for_end  # noqa: F401  (fixtures)
from tests.e2e.harness import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

URL = "/api/v1/executions"
REVERSE = {"create": "delete", "delete": "create", "update": "update", "replace": "replace"}


def outputs(execution) -> dict:
    return dict(StepRun.objects.filter(execution=execution, is_compensation=False, status=StepStatus.SUCCEEDED)
                .values_list("node_id", "output"))


def changes(plan: dict) -> dict[str, tuple[str, tuple]]:
    return {c["job_id"]: (c["action"], tuple(sorted(c["fields"])))
            for c in plan["plan"]["changes"] if c["action"] != "noop"}


def release(n: int) -> tuple[list, list]:
    """Version n of the workflow: each version's steps say which version they are."""
    nodes = [
        job("gate", "python", config={"callable": "sleep", "kwargs": {"seconds": "{{ .trigger.hold }}"}}),
        job("say", "python", config={"callable": "echo", "kwargs": {"version": n}}),
        job("report", "log", group="load", config={"message": f"reported by v{n}"}),
    ]
    pairs = [("gate", "say"), ("say", "report")]
    if n >= 2:
        nodes.append(job("note", "log", group="load", config={"message": "added in v2"}))
        pairs.append(("report", "note"))
    if n >= 3:
        nodes.append(job("audit", "python", config={"callable": "echo", "kwargs": {"audited": True}}))
        pairs.append(("note", "audit"))
    return nodes, edges(*pairs)


@pytest.fixture
def workflow(project, owner):
    return Workflow.objects.create(project=project, slug="orders", name="Orders", status="active", created_by=owner)


@pytest.fixture
def api(client_for, owner):
    return client_for(owner)


def start(api, body) -> dict:
    response = api.post(URL, body, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def test_rollback_from_v3_to_v1_shows_the_reverse_diff_and_runs_v1_while_a_v3_run_stays_pinned(
    fleet, project, owner, workflow, api
):
    flow = Flow(api, workflow)
    for n in (1, 2, 3):
        make_version(project, *release(n), user=owner, workflow=workflow)
        deployment = flow.deploy(n)
    assert deployment["version"] == 3

    pinned = start(api, {"workflow": workflow.pk, "input": {"hold": 2}})  # environment defaults to prod
    wait_until(lambda: StepRun.objects.filter(execution_id=pinned["id"], node_id="gate").exists(), timeout=20,
               what="the v3 run to be under way")

    response = api.post(f"/api/v1/deployments/{deployment['id']}/rollback", {"version": 1}, format="json")
    assert response.status_code == 200, response.json()
    rolled = response.json()
    after = start(api, {"workflow": workflow.pk, "environment": "prod", "input": {"hold": 0}})

    # The rollback plan is the exact reverse of going forward from v1 to v3 again.
    assert (rolled["version"], rolled["pinned"], rolled["status"]) == (1, True, "active")
    backward = changes(rolled["plan"])
    assert backward == {
        "say": ("update", ("config.kwargs.version",)), "report": ("update", ("config.message", "downstream")),
        "note": ("delete", ()), "audit": ("delete", ()),
    }
    forward = changes(flow.plan(3))  # a preview only: nothing is applied
    assert {job_id: (REVERSE[action], fields) for job_id, (action, fields) in forward.items()} == backward

    old, new = (wait_for_end(run["id"], timeout=30) for run in (pinned, after))
    rolled_back_at = DeploymentEvent.objects.get(deployment_id=deployment["id"], kind="rolled_back").created_at
    assert old.finished_at > rolled_back_at  # the v3 run was still going when v1 came back
    assert (old.status, new.status) == (ExecutionStatus.SUCCEEDED, ExecutionStatus.SUCCEEDED), (old.error, new.error)
    assert (old.version.number, new.version.number) == (3, 1) and old.deployment_id == new.deployment_id
    assert outputs(old)["say"] == {"version": 3} and outputs(old)["audit"] == {"audited": True}
    assert outputs(old)["report"] == {"message": "reported by v3"}
    assert outputs(new)["say"] == {"version": 1} and outputs(new)["report"] == {"message": "reported by v1"}
    assert set(outputs(new)) == {"gate", "say", "report"}  # v1's steps only
    assert new.created_at > old.created_at and after["version_number"] == 1 and pinned["version_number"] == 3


def test_a_landing_edge_moves_the_data_from_ingest_to_load_through_the_store(
    fleet, project, owner, workflow, api, landing_dir
):
    data = {"rows": [1, 2, 3], "source": "ingest"}
    make_version(project, [
        job("produce", "python", config={"callable": "echo", "kwargs": data}),
        job("consume", "jq", group="load", config={"program": '.steps["produce->consume/landing-read"].output'}),
    ], [{"from": "produce", "to": "consume", "delivery": "landing"}], user=owner, workflow=workflow)
    Flow(api, workflow).deploy(1)

    execution = wait_for_end(start(api, {"workflow": workflow.pk})["id"], timeout=30)

    assert execution.status == ExecutionStatus.SUCCEEDED, execution.error
    write, read = "produce->consume/landing-write", "produce->consume/landing-read"
    runs = {r.node_id: r for r in StepRun.objects.filter(execution=execution, is_compensation=False)}
    assert {node: (r.worker, r.status) for node, r in runs.items()} == {
        "produce": (HOSTS["ingest"], "succeeded"), write: (HOSTS["ingest"], "succeeded"),
        read: (HOSTS["load"], "succeeded"), "consume": (HOSTS["load"], "succeeded"),
    }
    assert runs["consume"].output == data and runs[read].output == data
    landed = landing_dir / str(execution.pk) / "produce->consume.json"
    assert landed.is_file() and json.loads(landed.read_text()) == data
    assert runs[write].output == {"key": f"{execution.pk}/produce->consume", "bytes": landed.stat().st_size}


def test_paused_and_undeployed_deployments_refuse_runs_with_409_and_resume_accepts_again(
    fleet, redis_test_db, project, owner, workflow, api
):
    make_version(project, [job("only", "python", config={"callable": "echo", "kwargs": {"ok": True}})],
                 user=owner, workflow=workflow)
    deployment = Flow(api, workflow).deploy(1)
    by_id, by_workflow = {"deployment": deployment["id"]}, {"workflow": workflow.pk}

    assert api.post(f"/api/v1/deployments/{deployment['id']}/pause").status_code == 200
    for body in (by_id, by_workflow):
        response = api.post(URL, body, format="json")
        assert (response.status_code, response.json()["error"]) == (409, "deployment_paused")
    assert redis_test_db.llen(fleet.queue("ingest")) == 0

    assert api.post(f"/api/v1/deployments/{deployment['id']}/resume").status_code == 200
    resumed = wait_for_end(start(api, by_workflow)["id"], timeout=30)
    assert resumed.status == ExecutionStatus.SUCCEEDED and outputs(resumed) == {"only": {"ok": True}}

    assert api.post(f"/api/v1/deployments/{deployment['id']}/undeploy").status_code == 200
    refused = [api.post(URL, body, format="json") for body in (by_id, by_workflow)]
    assert [(r.status_code, r.json()["error"]) for r in refused] == [
        (409, "deployment_undeployed"), (409, "not_deployed")]
    assert StepRun.objects.filter(execution__deployment_id=deployment["id"]).count() == 1  # the resumed run only


def test_a_dead_letter_replays_on_what_is_deployed_now(fleet, project, owner, workflow, api):
    flow = Flow(api, workflow)
    make_version(project, [job("charge", "fail", group="load", config={"retryable": False})], user=owner,
                 workflow=workflow)
    flow.deploy(1)
    failed = wait_for_end(start(api, {"workflow": workflow.pk, "input": {"order": 7}})["id"])
    assert failed.status == ExecutionStatus.FAILED
    letter = DeadLetter.objects.get(execution=failed)
    make_version(project, [job("charge", "python", group="load", config={
        "callable": "echo", "kwargs": {"order": "{{ .trigger.order }}"}})], user=owner, workflow=workflow)
    flow.deploy(2)  # the fix

    response = api.post(f"/api/v1/dead-letters/{letter.pk}/replay")

    assert response.status_code == 201, response.json()
    replay = wait_for_end(response.json()["id"], timeout=30)
    assert (replay.status, replay.trigger, replay.input, replay.version.number) == (
        ExecutionStatus.SUCCEEDED, "replay", {"order": 7}, 2)
    assert outputs(replay) == {"charge": {"order": 7}}
    listed = api.get("/api/v1/dead-letters?status=replayed").json()["results"]
    assert [(row["id"], row["replay_execution"]) for row in listed] == [(letter.pk, str(replay.pk))]
