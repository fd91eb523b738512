"""A fused run of steps without workers: the compiled canvas states the fusion, and `steps_execute`
stops where the unfused chain would and, delivered again, runs only what is not recorded yet."""
from __future__ import annotations

import pytest
from django.db import OperationalError, connection
from django.test.utils import CaptureQueriesContext

from controlplane.executions.models import ExecutionStatus, StepRun
from controlplane.executions.services import Delivery, execution_start, step_execute
from controlplane.executions.services.fused import steps_execute
from controlplane.executions.services.start_canvas import fusible_nodes, start_canvas_cache_clear
from tests.controlplane.executions.builders import edges, job, make_deployment

pytestmark = pytest.mark.django_db

FAST_RETRY = {"max_attempts": 3, "initial_delay_s": 0.05, "max_delay_s": 0.2, "jitter": False}


@pytest.fixture(autouse=True)
def _cold_cache():
    start_canvas_cache_clear()
    yield
    start_canvas_cache_clear()


def delivery(retries: int = 0) -> Delivery:
    return Delivery(task_id="t-fused", worker="ingest1@unit", queue="wg.acme.ingest", retries=retries,
                    request={"id": "t-fused", "task": "flowplane.steps", "retries": retries})


def attempts(execution):
    return list(StepRun.objects.filter(execution=execution).order_by("node_id", "attempt")
                .values_list("node_id", "attempt", "status"))


def test_only_side_effect_free_single_shard_steps_without_a_timeout_are_fusible():
    jobs = [
        {"id": "noop", "type": "noop", "replicas": 1, "timeout_s": None},
        {"id": "jq", "type": "jq", "replicas": 1, "timeout_s": None},
        {"id": "timed", "type": "jq", "replicas": 1, "timeout_s": 5},
        {"id": "wide", "type": "noop", "replicas": 2, "timeout_s": None},
        {"id": "call", "type": "http", "replicas": 1, "timeout_s": None},
        {"id": "unknown", "type": "no-such-type", "replicas": 1, "timeout_s": None},
    ]
    assert fusible_nodes(jobs) == {"noop", "jq"}


def test_the_started_run_s_canvas_states_the_fused_task(groups, project, owner):
    deployment = make_deployment(project, [
        job("a"), job("b", "log", config={"message": "hi"}), job("c", group="load"), job("d", group="load"),
        job("e", "http", group="load", config={"url": "http://127.0.0.1:9/x"}),
    ], edges(("a", "b"), ("b", "c"), ("c", "d"), ("d", "e")), user=owner)

    execution, _ = execution_start(deployment=deployment, input={}, user=owner)

    root = execution.canvas["root"]
    assert root["kind"] == "chain"
    assert [item["kind"] for item in root["items"]] == ["steps", "steps", "step"]
    assert [item.get("nodes") for item in root["items"][:2]] == [["a", "b"], ["c", "d"]]
    assert execution.canvas["task_count"] == 3
    assert execution.events.get(type="execution.started").data["tasks"] == 3


def test_a_retry_stops_the_fused_run_and_its_next_delivery_runs_only_the_rest(groups, project, owner):
    deployment = make_deployment(project, [
        job("a"), job("flaky", "fail", config={"fail_attempts": 1}, retry=FAST_RETRY), job("c"),
    ], edges(("a", "flaky"), ("flaky", "c")), user=owner)
    execution, _ = execution_start(deployment=deployment, input={}, user=owner)
    nodes = ["a", "flaky", "c"]

    first = steps_execute(execution_id=execution.pk, node_ids=nodes, delivery=delivery(0), final=True)
    assert first.action == "retry" and first.countdown > 0
    assert attempts(execution) == [("a", 1, "succeeded"), ("flaky", 1, "failed")]

    again = steps_execute(execution_id=execution.pk, node_ids=nodes, delivery=delivery(1), final=True)
    assert (again.action, again.status) == ("done", ExecutionStatus.SUCCEEDED)  # the last node finished the run
    assert attempts(execution) == [("a", 1, "succeeded"), ("c", 1, "succeeded"),
                                   ("flaky", 1, "failed"), ("flaky", 2, "succeeded")]
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.SUCCEEDED


def test_a_final_failure_stops_the_fused_run_and_fails_the_execution(groups, project, owner):
    deployment = make_deployment(project, [
        job("a"), job("boom", "fail", config={"retryable": False}), job("c"),
    ], edges(("a", "boom"), ("boom", "c")), user=owner)
    execution, _ = execution_start(deployment=deployment, input={}, user=owner)

    outcome = steps_execute(execution_id=execution.pk, node_ids=["a", "boom", "c"], delivery=delivery(), final=True)

    assert outcome.action == "fail"
    assert attempts(execution) == [("a", 1, "succeeded"), ("boom", 1, "failed")]
    execution.refresh_from_db()
    assert execution.status in (ExecutionStatus.COMPENSATING, ExecutionStatus.FAILED)
    # Delivered again (a redelivery after the failure): nothing more runs.
    repeat = steps_execute(execution_id=execution.pk, node_ids=["a", "boom", "c"], delivery=delivery(), final=True)
    assert repeat.action == "ignore"
    assert not StepRun.objects.filter(execution=execution, node_id="c").exists()


def test_an_empty_fused_run_is_refused():
    with pytest.raises(ValueError):
        steps_execute(execution_id="00000000-0000-0000-0000-000000000000", node_ids=[], delivery=delivery())


# ------------------------------------------------------------------ packed chord headers


def fan_out(project, owner, siblings):
    """start -> each of `siblings` (job dicts) -> join (a jq of every sibling's output)."""
    ids = [s["id"] for s in siblings]
    program = "[" + ", ".join(f".steps.{i}.output" for i in ids) + "]"
    return make_deployment(project, [job("start"), *siblings, job("join", "jq", config={"program": program})],
                           edges(*[("start", i) for i in ids], *[(i, "join") for i in ids]), user=owner)


def packed_parts(execution) -> list[list[str]]:
    header = execution.canvas["root"]["items"][1]["header"]
    return [part.get("nodes") or [part["node"]] for part in header]


def test_a_header_wider_than_engine_header_parts_is_packed_into_that_many_tasks(groups, project, owner, settings):
    settings.ENGINE_HEADER_PARTS = 2
    deployment = fan_out(project, owner, [job(f"b{i}") for i in range(5)] + [
        job("timed", timeout_s=5), job("call", "http", config={"url": "http://127.0.0.1:9/x"})])

    execution, _ = execution_start(deployment=deployment, input={}, user=owner)

    # Only side-effect-free steps without a time limit of their own are packed; the rest keep a task each.
    assert packed_parts(execution) == [["b0", "b1", "b2"], ["b3", "b4"], ["call"], ["timed"]]
    assert execution.canvas["task_count"] == 6
    settings.ENGINE_HEADER_PARTS = 16
    start_canvas_cache_clear()
    wide, _ = execution_start(deployment=deployment, input={}, user=owner)
    assert len(packed_parts(wide)) == 7


def test_a_packed_part_retries_its_flaky_sibling_alone_and_a_duplicate_runs_nothing_twice(
        groups, project, owner, settings):
    settings.ENGINE_HEADER_PARTS = 2
    deployment = fan_out(project, owner, [
        job("b0"), job("flaky", "fail", config={"fail_attempts": 1}, retry=FAST_RETRY), job("b2", "jq", config={
            "program": ".steps.start.output"}), job("b3")])
    execution, _ = execution_start(deployment=deployment, input={}, user=owner)
    first_part, second_part = packed_parts(execution)
    assert first_part == ["b0", "b2"] and second_part == ["b3", "flaky"]
    steps_execute(execution_id=execution.pk, node_ids=["start"], delivery=delivery())

    ran = steps_execute(execution_id=execution.pk, node_ids=second_part, delivery=delivery(0))
    assert ran.action == "retry"  # b3 ran, then flaky's first attempt failed: the part stops and retries
    assert attempts(execution) == [("b3", 1, "succeeded"), ("flaky", 1, "failed"), ("start", 1, "succeeded")]
    for retries in (1, 2):  # the retry runs only flaky; a duplicate of it runs nothing
        again = steps_execute(execution_id=execution.pk, node_ids=second_part, delivery=delivery(retries))
        assert again.action == "done"
    steps_execute(execution_id=execution.pk, node_ids=first_part, delivery=delivery())
    steps_execute(execution_id=execution.pk, node_ids=first_part, delivery=delivery())  # duplicate
    steps_execute(execution_id=execution.pk, node_ids=["join"], delivery=delivery(), final=True)

    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.SUCCEEDED, execution.error
    assert attempts(execution) == [("b0", 1, "succeeded"), ("b2", 1, "succeeded"), ("b3", 1, "succeeded"),
                                   ("flaky", 1, "failed"), ("flaky", 2, "succeeded"), ("join", 1, "succeeded"),
                                   ("start", 1, "succeeded")]
    assert StepRun.objects.get(execution=execution, node_id="join").output == [
        {}, {"attempt": 2, "failed_attempts": 1}, {}, {}]


# ------------------------------------------------------------------ durable together


def statements(queries) -> list[str]:
    return [q["sql"] for q in queries]


def deferred(sql: str) -> bool:
    return "set_config('synchronous_commit', 'off', true)" in sql


def synchronous_commit() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_a_fused_run_s_writes_wait_for_one_flush_its_last_synchronous_commit(groups, project, owner):
    deployment = make_deployment(project, [job("a"), job("b"), job("c")], edges(("a", "b"), ("b", "c")), user=owner)
    execution, _ = execution_start(deployment=deployment, input={}, user=owner)

    with CaptureQueriesContext(connection) as queries:
        outcome = steps_execute(execution_id=execution.pk, node_ids=["a", "b", "c"], delivery=delivery(), final=True)

    assert (outcome.action, outcome.status) == ("done", ExecutionStatus.SUCCEEDED)
    writes = [sql for sql in statements(queries) if "INSERT INTO" in sql]
    # a and b commit without waiting; c's write also finishes the run: synchronous, so it flushes
    # theirs too, and no separate flush is needed.
    assert [deferred(sql) for sql in writes] == [True, True, False]
    assert not any("txid_current" in sql for sql in statements(queries))
    assert synchronous_commit() == "on"  # the setting ended with each statement's transaction


@pytest.mark.django_db(transaction=True)
def test_a_packed_part_whose_writes_all_deferred_waits_for_one_flush_before_it_returns(groups, project, owner,
                                                                                      settings):
    settings.ENGINE_HEADER_PARTS = 2
    deployment = fan_out(project, owner, [job(f"b{i}") for i in range(4)])
    execution, _ = execution_start(deployment=deployment, input={}, user=owner)
    steps_execute(execution_id=execution.pk, node_ids=["start"], delivery=delivery())
    part = packed_parts(execution)[0]

    with CaptureQueriesContext(connection) as queries:
        assert steps_execute(execution_id=execution.pk, node_ids=part, delivery=delivery()).action == "done"

    sql = statements(queries)
    assert [deferred(s) for s in sql if "INSERT INTO" in s] == [True, True]
    assert sql[-1] == "SELECT txid_current()"  # the flush, last, once
    assert attempts(execution) == [(node, 1, "succeeded") for node in sorted([*part, "start"])]
    # Outside a fused task nothing is deferred.
    with CaptureQueriesContext(connection) as queries:
        steps_execute(execution_id=execution.pk, node_ids=[packed_parts(execution)[1][0]], delivery=delivery())
        step_execute(execution_id=execution.pk, node_id=packed_parts(execution)[1][1], shard=0, shard_count=1,
                     delivery=delivery())
    assert sum(deferred(s) for s in statements(queries)) == 1 and synchronous_commit() == "on"


@pytest.mark.django_db(transaction=True)
def test_a_fused_run_that_raises_leaves_without_a_flush_and_without_the_setting(groups, project, owner, monkeypatch):
    deployment = make_deployment(project, [job("a"), job("b")], edges(("a", "b")), user=owner)
    execution, _ = execution_start(deployment=deployment, input={}, user=owner)
    from controlplane.executions.services import fused

    real = fused.step_execute

    def second_one_breaks(**kwargs):
        if kwargs["node_id"] == "b":
            raise OperationalError("the database went away")
        return real(**kwargs)

    monkeypatch.setattr(fused, "step_execute", second_one_breaks)
    with CaptureQueriesContext(connection) as queries, pytest.raises(OperationalError):
        steps_execute(execution_id=execution.pk, node_ids=["a", "b"], delivery=delivery(), final=True)

    assert not any("txid_current" in sql for sql in statements(queries))
    assert synchronous_commit() == "on"
    assert attempts(execution) == [("a", 1, "succeeded")]  # committed (not yet flushed when it raised)
