"""End-to-end runs on real workers: chains, chords, replicas, placement, retries, idempotency."""
from __future__ import annotations

import pytest

from controlplane.executions.models import EventType, ExecutionStatus, StepRun, StepStatus
from tests.controlplane.executions.builders import edges, job, make_deployment
from tests.e2e.engine_support import HOSTS, WORKER_ENV, fleet, run_to_end  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

FAST_RETRY = {"max_attempts": 3, "initial_delay_s": 0.05, "max_delay_s": 0.2, "jitter": False}


def runs(execution, **filters):
    return StepRun.objects.filter(execution=execution, is_compensation=False, **filters)


def test_linear_run_passes_outputs_through_the_store(fleet, project, owner):
    deployment = make_deployment(project, [
        job("a", "python", config={"callable": "echo", "kwargs": {"x": "{{ .trigger.n }}"}}),
        job("b", "jq", group="load", config={"program": ".x + 1", "input": "{{ .steps.a.output }}"}),
        job("c", "python", config={"callable": "echo", "kwargs": {"total": "{{ .steps.b.output }}"}}),
    ], edges(("a", "b"), ("b", "c")), user=owner)

    execution = run_to_end(deployment, owner, {"n": 41})

    assert execution.status == ExecutionStatus.SUCCEEDED, execution.error
    assert runs(execution, node_id="c").get().output == {"total": 42}
    types = list(execution.events.order_by("seq").values_list("type", flat=True))
    assert types[0] == EventType.EXECUTION_STARTED and types[-1] == EventType.EXECUTION_SUCCEEDED
    assert types.count(EventType.STEP_COMPLETED) == 3
    assert list(execution.events.values_list("seq", flat=True)) == list(range(1, len(types) + 1))


def test_fan_out_fan_in_joins_with_a_chord(fleet, project, owner):
    deployment = make_deployment(project, [
        job("split"),
        job("left", "python", config={"callable": "echo", "kwargs": {"v": 1}}),
        job("right", "python", group="load", config={"callable": "echo", "kwargs": {"v": 2}}),
        job("join", "jq", config={"program": ".steps.left.output.v + .steps.right.output.v"}),
    ], edges(("split", "left"), ("split", "right"), ("left", "join"), ("right", "join")), user=owner)

    execution = run_to_end(deployment, owner)

    assert execution.status == ExecutionStatus.SUCCEEDED, execution.error
    assert execution.canvas["root"]["kind"] == "chain"
    assert runs(execution, node_id="join").get().output == 3
    join = runs(execution, node_id="join").get()
    assert all(run.finished_at <= join.started_at for run in runs(execution, node_id__in=["left", "right"]))


def test_replicas_run_every_shard_and_merge_their_outputs(fleet, project, owner):
    deployment = make_deployment(project, [
        job("fan", "python", group="load", replicas=4, config={"callable": "e2e.shard"}),
        job("sum", "jq", config={"program": "[.steps.fan.output[].shard] | add"}),
    ], edges(("fan", "sum")), user=owner)

    execution = run_to_end(deployment, owner)

    assert execution.status == ExecutionStatus.SUCCEEDED, execution.error
    shards = runs(execution, node_id="fan", status=StepStatus.SUCCEEDED)
    assert sorted(shards.values_list("shard", flat=True)) == [0, 1, 2, 3]
    assert {run.output["count"] for run in shards} == {4}
    assert runs(execution, node_id="sum").get().output == 0 + 1 + 2 + 3


def test_a_step_placed_on_a_group_runs_only_on_that_groups_worker(fleet, project, owner):
    deployment = make_deployment(project, [
        job("here"), job("there", group="load"), job("back"),
    ], edges(("here", "there"), ("there", "back")), user=owner)

    execution = run_to_end(deployment, owner)

    assert execution.status == ExecutionStatus.SUCCEEDED, execution.error
    workers = dict(runs(execution).values_list("node_id", "worker"))
    assert workers == {"here": HOSTS["ingest"], "there": HOSTS["load"], "back": HOSTS["ingest"]}
    assert runs(execution, node_id="there").get().queue == fleet.queue("load")


def test_a_step_that_fails_twice_is_retried_then_succeeds(fleet, project, owner):
    deployment = make_deployment(project, [
        job("flaky", "fail", group="load", config={"fail_attempts": 2}, retry=FAST_RETRY),
        job("after"),
    ], edges(("flaky", "after")), user=owner)

    execution = run_to_end(deployment, owner)

    assert execution.status == ExecutionStatus.SUCCEEDED, execution.error
    attempts = list(runs(execution, node_id="flaky").order_by("attempt").values_list("attempt", "status"))
    assert attempts == [(1, "failed"), (2, "failed"), (3, "succeeded")]
    assert execution.events.filter(type=EventType.STEP_RETRYING).count() == 2
    assert len({run.task_id for run in runs(execution, node_id="flaky")}) == 1  # Celery retry: same task id


def test_a_condition_skips_the_untaken_branch(fleet, project, owner):
    deployment = make_deployment(project, [
        job("check", "condition", config={"expression": ".trigger.go"}),
        job("yes", "python", config={"callable": "echo", "kwargs": {"took": "yes"}}),
        job("no", "python", group="load", config={"callable": "echo", "kwargs": {"took": "no"}}),
        job("after_no"),
    ], edges(("check", "yes", "true"), ("check", "no", "false"), ("no", "after_no")), user=owner)

    execution = run_to_end(deployment, owner, {"go": True})

    assert execution.status == ExecutionStatus.SUCCEEDED, execution.error
    statuses = dict(runs(execution).values_list("node_id", "status"))
    assert statuses == {"check": "succeeded", "yes": "succeeded", "no": "skipped", "after_no": "skipped"}


def test_the_same_idempotency_key_twice_gives_one_execution(fleet, project, owner):
    from controlplane.executions.services import execution_start

    deployment = make_deployment(project, [job("only")], user=owner)
    first, created = execution_start(deployment=deployment, input={"a": 1}, user=owner, idempotency_key="k-1")
    second, created_again = execution_start(deployment=deployment, input={"a": 1}, user=owner, idempotency_key="k-1")

    assert (created, created_again) == (True, False) and first.pk == second.pk
    done = run_to_end(deployment, owner, {"a": 1}, idempotency_key="k-1")
    assert done.pk == first.pk and done.status == ExecutionStatus.SUCCEEDED
    assert runs(done).count() == 1


def test_an_n_shaped_graph_runs_in_layers_and_keeps_every_edge(fleet, project, owner):
    deployment = make_deployment(project, [
        job("a", "python", config={"callable": "echo", "kwargs": {"v": 1}}),
        job("b", "python", group="load", config={"callable": "echo", "kwargs": {"v": 2}}),
        job("c", "jq", config={"program": ".steps.a.output.v"}),
        job("d", "jq", group="load", config={"program": ".steps.a.output.v + .steps.b.output.v"}),
    ], edges(("a", "c"), ("a", "d"), ("b", "d")), user=owner)

    execution = run_to_end(deployment, owner)

    assert execution.status == ExecutionStatus.SUCCEEDED, execution.error
    assert execution.canvas["strategy"] == "layered"
    assert dict(runs(execution, node_id__in=["c", "d"]).values_list("node_id", "output")) == {"c": 1, "d": 3}


def test_timeout_s_is_enforced_as_a_soft_time_limit(fleet, project, owner):
    deployment = make_deployment(project, [
        job("slow", "python", config={"callable": "sleep", "kwargs": {"seconds": 10}}, timeout_s=0.5),
    ], user=owner)

    execution = run_to_end(deployment, owner, timeout=20)

    assert execution.status == ExecutionStatus.FAILED
    run = runs(execution, node_id="slow").get()
    assert run.error["details"]["reason"] == "timeout" and run.duration_ms < 5000


def test_a_wide_fan_out_on_concurrent_processes_records_every_step_once_in_a_dense_event_sequence(
    fleet, start_worker, project, owner
):
    # Four processes take branches of one run at once: their unlocked writes collide, and each
    # collision must write nothing and fall back to the locked path.
    start_worker([fleet.queue("ingest")], "ingest-wide@e2e", concurrency=3, extra_env=WORKER_ENV)
    width = 24
    branches = [job(f"b{i}", "jq", config={"program": f"{i}"}) for i in range(width)]
    deployment = make_deployment(project, [job("split"), *branches,
                                           job("join", "jq", config={"program": "[.steps[].output | numbers] | add"})],
                                 edges(*[("split", f"b{i}") for i in range(width)],
                                       *[(f"b{i}", "join") for i in range(width)]), user=owner)

    execution = run_to_end(deployment, owner, timeout=60)

    assert execution.status == ExecutionStatus.SUCCEEDED, execution.error
    assert runs(execution, node_id="join").get().output == sum(range(width))
    assert sorted(runs(execution).values_list("node_id", flat=True)) == sorted(
        ["split", "join", *[f"b{i}" for i in range(width)]])  # one attempt each, all succeeded
    assert set(runs(execution).values_list("status", flat=True)) == {StepStatus.SUCCEEDED}
    events = dict(execution.events.values_list("seq", "type"))
    assert sorted(events) == list(range(1, execution.event_seq + 1))
    for run in runs(execution):
        completed = execution.events.get(seq=run.completed_seq)
        assert (completed.type, completed.data["node_id"]) == (EventType.STEP_COMPLETED, run.node_id)
