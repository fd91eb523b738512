"""Replays without workers: exact, modified (input, mocked steps), from_step (reused outputs), the
version choice, the links and events on both runs, and the API's refusals."""
from __future__ import annotations

import json

import pytest

from controlplane.executions.models import EventType, Execution, ExecutionStatus, ReplayMode, StepRun, StepStatus
from controlplane.executions.services import (
    Delivery,
    compensation_execute,
    execution_replay,
    execution_start,
    saga_finish,
    saga_start,
    step_execute,
)
from controlplane.tenancy.models import Role
from tests.controlplane.executions.builders import deploy_version, edges, job, make_deployment, make_version
from tests.factories import add_member

pytestmark = pytest.mark.django_db

DELIVERY = Delivery(task_id="t-1", worker="ingest1@unit", queue="wg.acme.ingest")
URL = "/api/v1/executions"


def chain():
    """a -> b -> c, each a jq step whose output says which step made it from what trigger."""
    nodes = [job(n, "jq", config={"program": f'{{step: "{n}", order: .trigger.order}}'}) for n in "abc"]
    return nodes, edges(("a", "b"), ("b", "c"))


def run_through(execution, nodes=("a", "b", "c")):
    """Drive every node of the run in order, as the canvas would (the last one finishes the run)."""
    return {node: step_execute(execution_id=execution.pk, node_id=node, shard=0, shard_count=1, delivery=DELIVERY,
                               final=node == nodes[-1])
            for node in nodes}


def outputs(execution):
    return dict(StepRun.objects.filter(execution=execution, is_compensation=False, status=StepStatus.SUCCEEDED)
                .values_list("node_id", "output"))


@pytest.fixture
def deployment(groups, project, owner):
    return make_deployment(project, *chain(), user=owner)


@pytest.fixture
def original(deployment, owner):
    execution, _ = execution_start(deployment=deployment, input={"order": 1}, user=owner)
    run_through(execution)
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.SUCCEEDED
    return execution


def test_an_exact_replay_runs_every_step_again_with_the_same_input_and_links_both_runs(original, owner):
    replay = execution_replay(execution=original, user=owner, mode=ReplayMode.EXACT, version="pinned")

    assert not StepRun.objects.filter(execution=replay).exists()  # nothing pre-recorded: all steps run
    assert all(outcome.detail != "already recorded; not run again" for outcome in run_through(replay).values())
    replay.refresh_from_db()
    assert (replay.status, replay.trigger, replay.input, replay.replay_of_id, replay.replay_mode) == (
        ExecutionStatus.SUCCEEDED, "replay", {"order": 1}, original.pk, "exact")
    linked = replay.events.get(type=EventType.EXECUTION_REPLAY_OF).data
    assert (linked["original"], linked["mode"], linked["version"], linked["by"]) == (
        str(original.pk), "exact", "pinned", owner.username)
    back = original.events.get(type=EventType.EXECUTION_REPLAYED).data
    assert (back["replay"], back["by"]) == (str(replay.pk), owner.username)
    assert list(original.replays.all()) == [replay]


def test_from_step_reuses_the_outputs_upstream_and_runs_the_step_and_what_follows(original, owner):
    replay = execution_replay(execution=original, user=owner, mode=ReplayMode.FROM_STEP, version="pinned",
                              from_step="b", input={"order": 2})

    reused = StepRun.objects.get(execution=replay, node_id="a")
    source = StepRun.objects.get(execution=original, node_id="a")
    assert (reused.status, reused.output) == (StepStatus.SUCCEEDED, {"step": "a", "order": 1})
    event = replay.events.get(type=EventType.STEP_REUSED).data
    assert event["reused_from"] == {"execution": str(original.pk), "step_run": source.pk, "attempt": 1}
    assert reused.completed_seq == replay.events.get(type=EventType.STEP_REUSED).seq
    outcomes = run_through(replay)
    assert outcomes["a"].detail == "already recorded; not run again"  # the claim skips it
    assert StepRun.objects.filter(execution=replay, node_id="a").count() == 1
    replay.refresh_from_db()
    assert replay.status == ExecutionStatus.SUCCEEDED
    assert outputs(replay) == {"a": {"step": "a", "order": 1}, "b": {"step": "b", "order": 2},
                               "c": {"step": "c", "order": 2}}
    assert replay.events.get(type=EventType.EXECUTION_REPLAY_OF).data["reused"] == ["a"]


def test_a_modified_replay_records_a_mocked_step_instead_of_running_it(original, owner):
    replay = execution_replay(execution=original, user=owner, mode=ReplayMode.MODIFIED, version="active",
                              mock={"b": {"mocked": True}})

    mocked = StepRun.objects.get(execution=replay, node_id="b")
    assert (mocked.status, mocked.output, mocked.input) == (StepStatus.SUCCEEDED, {"mocked": True}, None)
    assert replay.events.get(type=EventType.STEP_MOCKED).data["node_id"] == "b"
    outcomes = run_through(replay)
    assert outcomes["b"].detail == "already recorded; not run again"
    assert outputs(replay) == {"a": {"step": "a", "order": 1}, "b": {"mocked": True}, "c": {"step": "c", "order": 1}}


def test_pinned_replays_the_originals_version_and_active_the_deployments_current_one(
    original, deployment, project, owner
):
    nodes, edge_list = chain()
    v2 = make_version(project, [*nodes, job("d", "noop")], [*edge_list, *edges(("c", "d"))], user=owner,
                      workflow=deployment.workflow)
    deploy_version(v2, user=owner)

    pinned = execution_replay(execution=original, user=owner, mode=ReplayMode.EXACT, version="pinned")
    active = execution_replay(execution=original, user=owner, mode=ReplayMode.EXACT, version="active")

    assert (pinned.version.number, active.version.number) == (1, 2)
    assert [j["id"] for j in pinned.graph["jobs"]] == ["a", "b", "c"]
    assert [j["id"] for j in active.graph["jobs"]] == ["a", "b", "c", "d"]
    assert pinned.events.get(type=EventType.EXECUTION_STARTED).data["version_number"] == 1
    assert pinned.deployment_id == active.deployment_id == deployment.pk
    assert outputs(pinned) == {}  # an exact replay reuses nothing


def test_from_step_is_refused_with_its_path_when_the_node_is_not_in_the_chosen_version(
    original, deployment, project, owner, client_for
):
    v2 = make_version(project, [job("x", "noop")], user=owner, workflow=deployment.workflow)
    deploy_version(v2, user=owner)
    api = client_for(owner)

    refused = api.post(f"{URL}/{original.pk}/replay", {"mode": "from_step", "from_step": "b", "version": "active"},
                       format="json")
    allowed = api.post(f"{URL}/{original.pk}/replay", {"mode": "from_step", "from_step": "b", "version": "pinned"},
                       format="json")

    assert (refused.status_code, refused.json()["error"], refused.json()["path"]) == (400, "unknown_node", "from_step")
    assert allowed.status_code == 201, allowed.json()
    assert Execution.objects.count() == 2  # the refused replay left nothing behind


@pytest.mark.parametrize("body, path", [
    pytest.param({"mode": "exact", "input": {"x": 1}}, "mode", id="exact-with-input"),
    pytest.param({"mode": "modified"}, "input", id="modified-without-change"),
    pytest.param({"mode": "from_step"}, "from_step", id="from-step-without-node"),
    pytest.param({"mode": "modified", "input": {}, "from_step": "b"}, "from_step", id="from-step-in-modified"),
    pytest.param({"mode": "modified", "mock": {"zz": {}}}, "mock.zz", id="mock-of-unknown-node"),
    pytest.param({"mode": "exact", "version": "latest"}, "version", id="unknown-version"),
])
def test_bad_replay_requests_are_refused_with_their_path(original, owner, client_for, body, path):
    response = client_for(owner).post(f"{URL}/{original.pk}/replay", body, format="json")

    assert response.status_code == 400, response.json()
    body = response.json()
    assert body.get("path") == path or path in {e["path"] for e in body.get("errors", [])}, body
    assert Execution.objects.count() == 1


def test_the_replay_api_answers_the_new_run_with_its_link(original, owner, company, client_for, outsider):
    viewer = add_member(company, role=Role.VIEWER)
    body = {"mode": "from_step", "from_step": "c", "version": "pinned", "mock": {"b": {"m": 1}}}

    response = client_for(owner).post(f"{URL}/{original.pk}/replay", body, format="json")

    assert response.status_code == 201, response.json()
    data = response.json()
    assert (data["replay_of"], data["replay_mode"], data["version_number"]) == (str(original.pk), "from_step", 1)
    assert outputs(Execution.objects.get(pk=data["id"])) == {"a": {"step": "a", "order": 1}, "b": {"m": 1}}
    assert client_for(viewer).post(f"{URL}/{original.pk}/replay", body, format="json").status_code == 403
    assert client_for(outsider).post(f"{URL}/{original.pk}/replay", body, format="json").status_code == 404


def test_runs_are_listed_by_trigger_and_counted_per_status(original, owner, outsider, client_for):
    replay = execution_replay(execution=original, user=owner, mode=ReplayMode.EXACT, version="pinned")
    api = client_for(owner)

    listed = api.get(f"{URL}?trigger=replay").json()["results"]
    summary = api.get(f"{URL}/summary").json()
    replays = api.get(f"{URL}/summary?trigger=replay&status=running").json()

    assert [row["id"] for row in listed] == [str(replay.pk)]
    assert summary["total"] == 2 and summary["by_status"]["succeeded"] == 1 and summary["by_status"]["running"] == 1
    assert summary["by_status"]["failed"] == 0  # every status, zeros too
    assert replays["total"] == 1
    assert client_for(outsider).get(f"{URL}/summary").json()["total"] == 0
    assert api.get(f"{URL}/summary?trigger=cron").status_code == 400


def test_a_failed_replay_compensates_only_the_steps_it_ran_not_the_reused_or_mocked_ones(
    original, deployment, project, owner
):
    """Given a -> b -> c -> d whose a, b, c each have a compensation, and a fix deployed since in
    which d now fails: a from_step c replay reuses a, mocks b, runs c, and d fails for good. Its
    saga undoes c alone: a's effect belongs to the original (its own saga's business), b never ran."""
    undo = {"type": "log", "config": {"message": "undo"}}
    nodes = [job(n, "jq", config={"program": f'{{step: "{n}"}}'}, compensate=undo) for n in "abc"]
    v2 = make_version(project, [*nodes, job("d", "fail", config={"retryable": False})],
                      edges(("a", "b"), ("b", "c"), ("c", "d")), user=owner, workflow=deployment.workflow)
    deploy_version(v2, user=owner)
    replay = execution_replay(execution=original, user=owner, mode=ReplayMode.FROM_STEP, version="active",
                              from_step="c", mock={"b": {"mocked": True}})

    outcomes = run_through(replay, nodes=("a", "b", "c", "d"))
    assert outcomes["d"].action == "fail"
    started = saga_start(execution_id=replay.pk, delivery=DELIVERY)
    assert saga_start(execution_id=replay.pk, delivery=DELIVERY).action == "ignore"  # a redelivered saga task
    planned = replay.events.get(type=EventType.SAGA_COMPENSATING).data
    for step in planned["steps"]:  # the chain the saga published
        run = StepRun.objects.get(execution=replay, node_id=step["node_id"], shard=step["shard"], is_compensation=False)
        assert compensation_execute(execution_id=replay.pk, step_run_id=run.pk, delivery=DELIVERY).action == "done"
    saga_finish(execution_id=replay.pk, delivery=DELIVERY)

    assert started.detail == "1 compensation(s)"
    assert [step["node_id"] for step in planned["steps"]] == ["c"]
    skipped = {step["node_id"]: step for step in planned["not_compensated"]}
    assert {node: step["reason"] for node, step in skipped.items()} == {"a": "reused", "b": "mocked"}
    assert skipped["a"]["reused_from"]["execution"] == str(original.pk)
    replay.refresh_from_db()
    assert replay.status == ExecutionStatus.COMPENSATED
    assert dict(StepRun.objects.filter(execution=replay, is_compensation=False).values_list("node_id", "status")) == {
        "a": StepStatus.SUCCEEDED, "b": StepStatus.SUCCEEDED, "c": StepStatus.COMPENSATED, "d": StepStatus.FAILED}
    assert replay.events.get(type=EventType.SAGA_COMPENSATED).data["compensated"] == [{"node_id": "c", "shard": 0}]


def test_a_failed_exact_replay_compensates_every_step_it_ran(original, deployment, project, owner):
    undo = {"type": "log", "config": {"message": "undo"}}
    v2 = make_version(project, [job("a", "noop", compensate=undo), job("d", "fail", config={"retryable": False})],
                      edges(("a", "d")), user=owner, workflow=deployment.workflow)
    deploy_version(v2, user=owner)
    replay = execution_replay(execution=original, user=owner, mode=ReplayMode.EXACT, version="active")

    run_through(replay, nodes=("a", "d"))
    saga_start(execution_id=replay.pk, delivery=DELIVERY)

    planned = replay.events.get(type=EventType.SAGA_COMPENSATING).data
    assert ([step["node_id"] for step in planned["steps"]], planned["not_compensated"]) == (["a"], [])


def test_a_replay_compiles_its_canvas_like_a_start_fused_and_runs_it_past_reused_steps(original, deployment, owner):
    """One builder for both (start_canvas.compile_graph): the jq chain runs as one fused task in a
    replay too, and that task walks past the reused step without running it."""
    from controlplane.executions.services.fused import steps_execute

    started, _ = execution_start(deployment=deployment, input={"order": 3}, user=owner)
    replay = execution_replay(execution=original, user=owner, mode=ReplayMode.FROM_STEP, version="pinned",
                              from_step="b", input={"order": 4})

    assert replay.canvas == started.canvas and '"kind": "steps", "nodes": ["a", "b", "c"]' in json.dumps(replay.canvas)
    outcome = steps_execute(execution_id=replay.pk, node_ids=["a", "b", "c"], delivery=DELIVERY, final=True)
    replay.refresh_from_db()
    assert (outcome.action, replay.status) == ("done", ExecutionStatus.SUCCEEDED)
    assert outputs(replay)["a"] == {"step": "a", "order": 1} and outputs(replay)["c"] == {"step": "c", "order": 4}
