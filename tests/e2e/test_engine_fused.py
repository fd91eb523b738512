"""Fused runs of side-effect-free steps (one `flowplane.steps` task for several chain nodes) on real
workers: retries, failures and compensation leave the same record as the unfused chain, and a
worker killed half-way through a fused task loses nothing and runs nothing twice."""
from __future__ import annotations

import pytest

from controlplane.executions.models import (
    TERMINAL_EXECUTION_STATUSES, EventType, Execution, ExecutionStatus, StepRun, StepStatus,
)
from controlplane.executions.services import execution_start, executions_redrive_stalled
from controlplane.executions.services import start_canvas as start_canvas_module
from controlplane.executions.services.start_canvas import start_canvas_cache_clear
from controlplane.fleet.services import fleet_sweep
from tests.controlplane.executions.builders import edges, job, make_deployment
from tests.e2e.engine_support import (  # noqa: F401  (fixtures)
    HOSTS, WORKER_ENV, fleet, recorder, run_to_end,
)
from tests.e2e.harness import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

FAST_RETRY = {"max_attempts": 3, "initial_delay_s": 0.05, "max_delay_s": 0.2, "jitter": False}
TWO_FAST_ATTEMPTS = {"max_attempts": 2, "initial_delay_s": 0.05, "max_delay_s": 0.1, "jitter": False}
# About a second of jq on this kind of machine (its budget without a timeout_s is 5 s).
SLOW_JQ = {"program": "reduce range(600000) as $i (0; . + $i)", "input": 0}


@pytest.fixture(autouse=True)
def _cold_cache():
    start_canvas_cache_clear()
    yield
    start_canvas_cache_clear()


def unfused(monkeypatch):
    """Compile canvases without fusion from now on (what the engine did before)."""
    monkeypatch.setattr(start_canvas_module, "fusible_nodes", lambda jobs: set())
    start_canvas_cache_clear()


def record(execution) -> tuple[list, list]:
    """What a run left, without ids and times: its events in order, and its attempts."""
    events = [(e.type, e.data.get("node_id"), e.data.get("attempt"))
              for e in execution.events.order_by("seq")]
    runs = list(StepRun.objects.filter(execution=execution).order_by("node_id", "is_compensation", "attempt")
                .values_list("node_id", "is_compensation", "attempt", "status"))
    return events, runs


def ended(execution):
    return Execution.objects.filter(pk=execution.pk, status__in=TERMINAL_EXECUTION_STATUSES).first()


def fused_tasks(execution) -> list[list[str]]:
    def walk(item):
        if item["kind"] == "steps":
            yield item["nodes"]
        for sub in [*item.get("items", ()), *item.get("header", ()), *([item["body"]] if "body" in item else [])]:
            yield from walk(sub)
    return list(walk(execution.canvas["root"]))


def test_a_fused_chain_with_a_flaky_middle_step_retries_it_as_the_unfused_chain_does(
        fleet, project, owner, monkeypatch):
    deployment = make_deployment(project, [
        job("first"),
        job("flaky", "fail", config={"fail_attempts": 2}, retry=FAST_RETRY),
        job("shape", "jq", config={"program": ".steps.flaky.output.attempt"}),
        job("last"),
    ], edges(("first", "flaky"), ("flaky", "shape"), ("shape", "last")), user=owner)

    fused = run_to_end(deployment, owner)
    unfused(monkeypatch)
    plain = run_to_end(deployment, owner)

    assert fused_tasks(fused) == [["first", "flaky", "shape", "last"]] and fused_tasks(plain) == []
    assert fused.status == plain.status == ExecutionStatus.SUCCEEDED, (fused.error, plain.error)
    assert record(fused) == record(plain)
    flaky = list(StepRun.objects.filter(execution=fused, node_id="flaky").order_by("attempt")
                 .values_list("attempt", "status"))
    assert flaky == [(1, "failed"), (2, "failed"), (3, "succeeded")]
    assert StepRun.objects.get(execution=fused, node_id="shape").output == 3
    # One task ran them all (its retries keep the task id); the first node ran once, not per retry.
    assert len({run.task_id for run in StepRun.objects.filter(execution=fused)}) == 1
    assert StepRun.objects.filter(execution=fused, node_id="first").count() == 1


def test_a_fused_step_that_fails_for_good_compensates_as_the_unfused_chain_does(
        fleet, recorder, project, owner, monkeypatch):
    def deploy():
        return make_deployment(project, [
            job("book", "http", config={"url": recorder.url("/book"), "method": "POST", "json": {}},
                compensate={"type": "http", "config": {"url": recorder.url("/cancel"), "method": "POST"}}),
            job("check"),
            job("boom", "fail", retry=TWO_FAST_ATTEMPTS),
            job("never"),
        ], edges(("book", "check"), ("check", "boom"), ("boom", "never")), user=owner)

    fused = run_to_end(deploy(), owner)
    unfused(monkeypatch)
    plain = run_to_end(deploy(), owner)

    assert fused_tasks(fused) == [["check", "boom", "never"]] and fused_tasks(plain) == []
    assert record(fused) == record(plain)
    assert_compensated_alike(fused, plain, recorder, never_ran="never")


def assert_compensated_alike(fused, plain, recorder, *, never_ran: str) -> None:
    """Both runs failed at `boom` and undid `book`; what came after boom never ran."""
    assert fused.status == plain.status == ExecutionStatus.COMPENSATED
    assert recorder.paths() == ["/book", "/cancel"] * 2
    assert not StepRun.objects.filter(execution=fused, node_id=never_ran).exists()
    assert fused.dead_letters.get().node_id == "boom"


def test_a_worker_killed_half_way_through_a_fused_task_loses_nothing_and_repeats_nothing(
        fleet, start_worker, project, owner, settings):
    settings.WORKER_OFFLINE_AFTER_S = 2
    deployment = make_deployment(project, [
        job("a"), job("slow", "jq", config=SLOW_JQ), job("c"), job("d"),
    ], edges(("a", "slow"), ("slow", "c"), ("c", "d")), user=owner)
    execution, _ = execution_start(deployment=deployment, input={}, user=owner)
    assert fused_tasks(execution) == [["a", "slow", "c", "d"]]

    wait_until(lambda: StepRun.objects.filter(execution=execution, node_id="a", status=StepStatus.SUCCEEDED).exists(),
               timeout=20, interval=0.02, what="the fused task's first node")
    fleet.workers["ingest"].kill9()  # while `slow` runs
    assert not StepRun.objects.filter(execution=execution, node_id="d").exists()
    replacement = start_worker([fleet.queue("ingest")], "ingest2@e2e", extra_env=WORKER_ENV)
    # Its unacknowledged message goes back on the queue once it is swept offline.
    execution = wait_until(lambda: fleet_sweep() is not None and ended(execution), timeout=40, interval=0.25,
                           what="the killed worker to be swept offline and the run to end")

    assert execution.status == ExecutionStatus.SUCCEEDED, execution.error
    runs = dict(StepRun.objects.filter(execution=execution).values_list("node_id", "worker"))
    assert StepRun.objects.filter(execution=execution).count() == 4  # each node once: none run twice
    assert runs["a"] == HOSTS["ingest"] and runs["d"] == replacement.hostname
    assert StepRun.objects.get(execution=execution, node_id="slow").output == sum(range(600000))


def test_a_fused_task_the_broker_lost_is_re_driven_by_the_watchdog(
        fleet, start_worker, project, owner, settings, redis_test_db):
    settings.EXECUTION_STALL_AFTER_S = 1
    deployment = make_deployment(project, [
        job("a", group="load"), job("b"), job("c"), job("d"),
    ], edges(("a", "b"), ("b", "c"), ("c", "d")), user=owner)
    fleet.workers["ingest"].kill9()  # still looks live for a while: the run starts, its fused task waits
    execution, _ = execution_start(deployment=deployment, input={}, user=owner)
    assert fused_tasks(execution) == [["b", "c", "d"]]
    queue = fleet.queue("ingest")
    wait_until(lambda: redis_test_db.llen(queue) > 0, timeout=20, what="the fused task's message")
    redis_test_db.delete(queue)  # what a Redis restart without persistence leaves of it
    start_worker([queue], "ingest2@e2e", extra_env=WORKER_ENV)

    execution = wait_until(lambda: executions_redrive_stalled() and ended(execution),
                           timeout=40, interval=0.5, what="the watchdog to re-drive the run to its end")

    assert execution.status == ExecutionStatus.SUCCEEDED, execution.error
    assert list(StepRun.objects.filter(execution=execution).order_by("node_id").values_list("node_id", "attempt")) \
        == [("a", 1), ("b", 1), ("c", 1), ("d", 1)]
    assert execution.events.filter(type=EventType.EXECUTION_REDRIVEN).exists()


# ------------------------------------------------------------------ packed chord headers


def fan_out(project, owner, siblings, **fields):
    """start -> each of `siblings` (job dicts) -> join (a jq of every sibling's output)."""
    ids = [s["id"] for s in siblings]
    program = "[" + ", ".join(f".steps.{i}.output" for i in ids) + "]"
    return make_deployment(project, [job("start", **fields), *siblings, job("join", "jq", config={"program": program})],
                           edges(*[("start", i) for i in ids], *[(i, "join") for i in ids]), user=owner)


def sorted_record(execution) -> tuple[list, list]:
    """`record` without the order of events (the siblings of a fan-out complete in any order)."""
    events, runs = record(execution)
    return sorted(events, key=repr), runs


def test_a_packed_fan_out_with_a_flaky_sibling_leaves_the_record_of_the_unpacked_one(
        fleet, project, owner, settings):
    settings.ENGINE_HEADER_PARTS = 3
    siblings = [job(f"b{i}", "jq", config={"program": f".steps.start.output + {{i: {i}}}"}) for i in range(7)]
    siblings.append(job("flaky", "fail", config={"fail_attempts": 2}, retry=FAST_RETRY))
    deployment = fan_out(project, owner, siblings)

    packed = run_to_end(deployment, owner)
    settings.ENGINE_HEADER_PARTS = 100
    start_canvas_cache_clear()
    plain = run_to_end(deployment, owner)

    assert len(fused_tasks(packed)) == 3 and fused_tasks(plain) == []
    assert packed.status == plain.status == ExecutionStatus.SUCCEEDED, (packed.error, plain.error)
    assert sorted_record(packed) == sorted_record(plain)
    assert StepRun.objects.get(execution=packed, node_id="join").output == [
        *({"i": i} for i in range(7)), {"attempt": 3, "failed_attempts": 2}]
    # Each sibling ran once, however often the part holding flaky was retried.
    assert StepRun.objects.filter(execution=packed).exclude(node_id="flaky").count() == 9


def test_a_packed_sibling_that_fails_for_good_compensates_as_the_unpacked_one_does(
        fleet, recorder, project, owner, settings):
    def deploy():
        return fan_out(project, owner, [job(f"b{i}") for i in range(4)] + [job("boom", "fail", retry=TWO_FAST_ATTEMPTS)],
                       type="http", config={"url": recorder.url("/book"), "method": "POST", "json": {}},
                       compensate={"type": "http", "config": {"url": recorder.url("/cancel"), "method": "POST"}})

    settings.ENGINE_HEADER_PARTS = 2
    packed = run_to_end(deploy(), owner)
    settings.ENGINE_HEADER_PARTS = 100
    start_canvas_cache_clear()
    plain = run_to_end(deploy(), owner)

    # (Which siblings got recorded before boom failed depends on timing in both runs.)
    assert len(fused_tasks(packed)) == 2 and fused_tasks(plain) == []
    assert_compensated_alike(packed, plain, recorder, never_ran="join")


def test_a_worker_killed_half_way_through_a_packed_part_loses_nothing_and_repeats_nothing(
        fleet, start_worker, project, owner, settings):
    settings.WORKER_OFFLINE_AFTER_S = 2
    settings.ENGINE_HEADER_PARTS = 2
    deployment = fan_out(project, owner, [job("b0"), job("b1"), job("slow", "jq", config=SLOW_JQ), job("b3")],
                         group="load")
    execution, _ = execution_start(deployment=deployment, input={}, user=owner)
    assert fused_tasks(execution) == [["b0", "b1"], ["b3", "slow"]]

    wait_until(lambda: StepRun.objects.filter(execution=execution, node_id="b3", status=StepStatus.SUCCEEDED).exists(),
               timeout=20, interval=0.02, what="the packed part's first node")
    fleet.workers["ingest"].kill9()  # while `slow` runs
    replacement = start_worker([fleet.queue("ingest")], "ingest2@e2e", extra_env=WORKER_ENV)
    execution = wait_until(lambda: fleet_sweep() is not None and ended(execution), timeout=40, interval=0.25,
                           what="the killed worker to be swept offline and the run to end")

    assert execution.status == ExecutionStatus.SUCCEEDED, execution.error
    assert StepRun.objects.filter(execution=execution).count() == 6  # each node once: none run twice
    runs = dict(StepRun.objects.filter(execution=execution).values_list("node_id", "worker"))
    assert runs["b3"] == HOSTS["ingest"] and runs["slow"] == replacement.hostname
    assert StepRun.objects.get(execution=execution, node_id="join").output == [{}, {}, sum(range(600000)), {}]
