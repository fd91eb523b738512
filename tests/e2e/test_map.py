"""End to end, the `map` step: a list known only at run time fanned out over real workers.

discover (jq: the list) -> each (map: one item per shard, at most max_parallel at once) -> after
(jq: reads the map's output). The worker serving the map has more pool processes than
max_parallel, so only the lanes can hold the items back.
"""
from __future__ import annotations

import os
import signal

import pytest
from django.db import transaction
from django.urls import reverse

import tests.e2e.map_callables  # noqa: F401  (registers `e2e.map_item` here too: planning validates it)
from controlplane.executions.models import DeadLetter, EventType, ExecutionStatus, StepRun, StepStatus
from controlplane.executions.selectors import execution_timeline
from controlplane.executions.services import execution_start, locked_execution, step_runs_recover_orphaned
from controlplane.executions.services.segments import segment_redrive
from tests.controlplane.executions.builders import edges, job, make_deployment, make_group
from tests.e2e.engine_support import WORKER_ENV, recorder, wait_for_end, wait_live  # noqa: F401  (fixtures)
from tests.e2e.harness import wait_until
from tests.factories import make_company, make_project, make_user

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

MAX_ITEMS = 300
MAP_ENV = {**WORKER_ENV, "FLOWPLANE_MAP_MAX_ITEMS": str(MAX_ITEMS),
           "PIPELINES_CALLABLE_MODULES": "pipelines.steps.builtin_callables,tests.e2e.map_callables"}
FAST_RETRY = {"max_attempts": 2, "initial_delay_s": 0.05, "max_delay_s": 0.1, "jitter": False}


@pytest.fixture
def fan(start_worker, company, settings):
    """acme's group `fan`, and globex's (the other tenant), served by one worker of 7 processes."""
    settings.FLOWPLANE_MAP_MAX_ITEMS = MAX_ITEMS  # the test process plans and may advance too
    globex_owner = make_user("globex-owner")
    globex = make_company("globex", owner=globex_owner)
    groups = {"acme": make_group(company, "fan"), "globex": make_group(globex, "fan")}
    worker = start_worker([g.queue_name for g in groups.values()], "fan1@e2e", concurrency=7, extra_env=MAP_ENV)
    for group in groups.values():
        wait_live(group)
    return {"worker": worker, "groups": groups, "globex": (make_project(globex, "data"), globex_owner)}


def item_step(**kwargs):
    return {"type": "python", "config": {"callable": "e2e.map_item",
                                         "kwargs": {"item": "{{ .item }}", "index": "{{ .item_index }}", **kwargs}}}


def map_deployment(project, owner, *, max_parallel=5, step=None, discover="[range(.trigger.n)]",
                   items="{{ .steps.discover.output }}", **fields):
    return make_deployment(project, [
        job("discover", "jq", group="fan", config={"program": discover}),
        job("each", "map", group="fan", config={"items": items, "max_parallel": max_parallel,
                                                "step": step or item_step()}, **fields),
        job("after", "jq", group="fan", config={"program": ".steps.each.output"}),
    ], edges(("discover", "each"), ("each", "after")), user=owner)


def run(deployment, owner, n, timeout=120):
    execution, _ = execution_start(deployment=deployment, input={"n": n}, user=owner)
    return wait_for_end(execution, timeout=timeout)


def items(execution):
    return list(StepRun.objects.filter(execution=execution, node_id="each", is_compensation=False)
                .order_by("shard", "attempt"))


def output_of(execution, node_id="after"):
    return StepRun.objects.get(execution=execution, node_id=node_id, status=StepStatus.SUCCEEDED).output


def max_overlap(runs) -> int:
    """The most attempts running at one moment, from their recorded claim and finish times."""
    edges_ = sorted([(r.started_at, 1) for r in runs] + [(r.finished_at, -1) for r in runs],
                    key=lambda e: (e[0], e[1]))  # a finish at the same instant as a start frees first
    running = peak = 0
    for _, step in edges_:
        running += step
        peak = max(peak, running)
    return peak


def test_a_map_over_0_1_and_200_items_runs_at_most_max_parallel_and_joins_in_item_order(fan, project, owner,
                                                                                        client):
    deployment = map_deployment(project, owner, max_parallel=5, step=item_step(sleep_s=0.02))

    empty = run(deployment, owner, 0)
    assert empty.status == ExecutionStatus.SUCCEEDED, empty.error
    assert output_of(empty) == []
    assert [(r.shard, r.shard_count, r.output) for r in items(empty)] == [(0, 0, [])]

    one = run(deployment, owner, 1)
    assert one.status == ExecutionStatus.SUCCEEDED, one.error
    assert [o["item"] for o in output_of(one)] == [0]

    many = run(deployment, owner, 200)
    assert many.status == ExecutionStatus.SUCCEEDED, many.error
    assert output_of(many) == [{"item": i, "index": i, "shard": i, "count": 200, "attempt": 1,
                                "key": f"{many.pk}:each:{i}"} for i in range(200)]
    runs = items(many)
    assert [(r.shard, r.attempt, r.status, r.shard_count) for r in runs] == [
        (i, 1, StepStatus.SUCCEEDED, 200) for i in range(200)]
    assert 2 <= max_overlap(runs) <= 5  # the lanes ran side by side, never more than five at once
    assert many.events.filter(type=EventType.MAP_EXPANDED).count() == 1
    timeline = [e for e in execution_timeline(execution=many)["steps"] if e["node_id"] == "each"]
    assert [(e["shard"], e["shard_count"], e["status"]) for e in timeline] == [
        (i, 200, StepStatus.SUCCEEDED) for i in range(200)]
    client.force_login(owner)
    page = client.get(reverse("web:execution-detail", args=[many.pk])).content.decode()
    assert 'data-step="each" data-shard="199"' in page and "shard 199 of 200" in page


def test_an_item_failing_once_is_retried_on_its_own_and_the_run_succeeds(fan, project, owner):
    deployment = map_deployment(project, owner, max_parallel=3, step=item_step(fail_once=[3, 7]), retry=FAST_RETRY)

    execution = run(deployment, owner, 10)

    assert execution.status == ExecutionStatus.SUCCEEDED, execution.error
    assert [o["item"] for o in output_of(execution)] == list(range(10))
    attempts = {}
    for r in items(execution):
        attempts.setdefault(r.shard, []).append(r.status)
    assert attempts[3] == attempts[7] == [StepStatus.FAILED, StepStatus.SUCCEEDED]
    assert all(statuses == [StepStatus.SUCCEEDED] for shard, statuses in attempts.items() if shard not in (3, 7))
    assert max_overlap(items(execution)) <= 3
    retried = execution.events.filter(type=EventType.STEP_RETRYING).values_list("data__shard", flat=True)
    assert sorted(retried) == [3, 7]


def test_an_item_failing_for_good_fails_the_run_and_compensates_each_completed_item(fan, recorder, project, owner):
    undo = {"type": "http", "config": {"url": recorder.url("/undo/") + "{{ .item }}", "method": "POST"}}
    deployment = map_deployment(project, owner, max_parallel=2, step=item_step(fail_always=[4]), compensate=undo)

    execution = run(deployment, owner, 6)

    assert execution.status == ExecutionStatus.COMPENSATED, execution.error
    runs = items(execution)
    compensated = sorted(r.shard for r in runs if r.status == StepStatus.COMPENSATED)
    assert {0, 2} <= set(compensated)  # lane 0 ran 0 and 2 before 4 failed
    assert 4 not in compensated and [r.status for r in runs if r.shard == 4] == [StepStatus.FAILED]
    assert not any(r.status == StepStatus.SUCCEEDED for r in runs)  # every completed item was undone
    paths = recorder.paths()
    assert sorted(paths) == sorted(f"/undo/{shard}" for shard in compensated)  # each exactly once
    assert paths.index("/undo/2") < paths.index("/undo/0")  # reverse completion order
    letter = DeadLetter.objects.get(execution=execution)
    assert (letter.node_id, letter.shard) == ("each", 4)
    assert not StepRun.objects.filter(execution=execution, node_id="after").exists()


def test_a_list_over_the_maximum_fails_the_map_with_a_clear_error(fan, project, owner):
    deployment = map_deployment(project, owner)

    execution = run(deployment, owner, MAX_ITEMS + 1)

    assert execution.status == ExecutionStatus.FAILED  # nothing completed had a compensation
    letter = DeadLetter.objects.get(execution=execution)
    assert (letter.node_id, letter.shard) == ("each", 0)
    assert letter.error["code"] == "invalid_map_items"
    assert letter.error["details"] == {"reason": "too_many", "path": "config.items", "count": MAX_ITEMS + 1,
                                       "max_items": MAX_ITEMS}
    assert f"{MAX_ITEMS + 1} items, over the map's maximum of {MAX_ITEMS}" in execution.error["error"]["message"]
    assert not execution.events.filter(type=EventType.MAP_EXPANDED).exists()
    assert not StepRun.objects.filter(execution=execution, node_id="after").exists()


def test_a_hostile_tenants_items_see_only_its_own_run(fan, project, owner):
    acme = run(map_deployment(project, owner, discover='["acme-secret-1"]'), owner, 0)
    assert acme.status == ExecutionStatus.SUCCEEDED, acme.error
    globex_project, globex_owner = fan["globex"]
    # The items' template reaches for everything it can: any string of its context, the environment.
    hostile = map_deployment(globex_project, globex_owner, max_parallel=2, discover="[]",
                             items='{{ [(.. | strings | select(test("acme"))), env, $ENV] }}',
                             step={"type": "jq", "config": {"program": "{item: .item, run: .execution.id}"}})

    execution = run(hostile, globex_owner, 0)

    assert execution.status == ExecutionStatus.SUCCEEDED, execution.error
    assert output_of(execution) == [{"item": {}, "run": str(execution.pk)}, {"item": {}, "run": str(execution.pk)}]


def test_a_duplicate_gate_and_join_do_not_double_anything(fan, project, owner):
    deployment = map_deployment(project, owner, max_parallel=2, step=item_step(sleep_s=0.3))
    execution, _ = execution_start(deployment=deployment, input={"n": 6}, user=owner)
    wait_until(lambda: StepRun.objects.filter(execution=execution, node_id="each").exists(), timeout=30,
               what="the first item to be claimed")

    for _ in range(2):  # the watchdog's re-drive of the map's segment, twice: gate, lanes and join again
        with transaction.atomic():
            segment_redrive(locked_execution(execution.pk))
    execution = wait_for_end(execution, timeout=60)

    assert execution.status == ExecutionStatus.SUCCEEDED, execution.error
    assert execution.events.filter(type=EventType.MAP_EXPANDED).count() == 1
    assert [(r.shard, r.attempt) for r in items(execution)] == [(i, 1) for i in range(6)]
    assert StepRun.objects.filter(execution=execution, node_id="after").count() == 1
    assert [o["item"] for o in output_of(execution)] == list(range(6))
    assert execution.events.filter(type=EventType.EXECUTION_SUCCEEDED).count() == 1


def test_a_killed_pool_child_running_an_item_is_retried(fan, project, owner, settings, tmp_path):
    settings.WORKER_OFFLINE_AFTER_S = 600  # the worker stays online: the redelivery path, not the offline one
    flag = tmp_path / "never"  # item 0's first attempt waits for it (bounded): long enough to be killed
    deployment = map_deployment(project, owner, max_parallel=2, step=item_step(hold_flag=str(flag)),
                                retry={"max_attempts": 2}, timeout_s=60)
    execution, _ = execution_start(deployment=deployment, input={"n": 4}, user=owner)
    claimed = wait_until(lambda: StepRun.objects.filter(execution=execution, node_id="each", shard=0,
                                                        status=StepStatus.RUNNING).first(),
                         timeout=30, what="item 0 to be claimed")
    assert claimed.pid and claimed.pid != fan["worker"].pid

    os.kill(claimed.pid, signal.SIGKILL)
    # Celery re-queues the killed child's message; its redelivery finds the claimer gone (the
    # orphan sweep beat would run is the backstop).
    wait_until(lambda: step_runs_recover_orphaned() >= 0 and StepRun.objects.filter(
        execution=execution, node_id="each", status=StepStatus.LOST).exists(), timeout=30, interval=0.5,
        what="the killed child's item attempt to be marked lost")
    execution = wait_for_end(execution, timeout=60)

    assert execution.status == ExecutionStatus.SUCCEEDED, execution.error
    assert [(r.attempt, r.status) for r in items(execution) if r.shard == 0] == [
        (1, StepStatus.LOST), (2, StepStatus.SUCCEEDED)]
    assert [o["item"] for o in output_of(execution)] == list(range(4))
    assert fan["worker"].process.poll() is None


def test_a_map_first_over_the_trigger_and_maps_in_series_and_side_by_side(fan, project, owner):
    double = {"type": "jq", "config": {"program": ".item * 2"}}
    deployment = make_deployment(project, [
        # A gate first: segment 0 is empty, the start opens the map at once.
        job("first", "map", group="fan", config={"items": "{{ .trigger.ids }}", "max_parallel": 2, "step": double}),
        # Fed by the first map's output (a list of its items' outputs, in item order) ...
        job("second", "map", group="fan", config={"items": "{{ .steps.first.output }}", "max_parallel": 3,
                                                  "step": double}),
        # ... while this one fans out beside it, over the same list.
        job("beside", "map", group="fan", config={"items": "{{ .steps.first.output | map(. + 1) }}",
                                                  "step": double}),
        job("after", "jq", group="fan", config={"program": "{second: .steps.second.output, "
                                                           "beside: .steps.beside.output}"}),
    ], edges(("first", "second"), ("first", "beside"), ("second", "after"), ("beside", "after")), user=owner)

    execution, _ = execution_start(deployment=deployment, input={"ids": [1, 2, 3, 4, 5]}, user=owner)
    execution = wait_for_end(execution, timeout=60)

    assert execution.status == ExecutionStatus.SUCCEEDED, execution.error
    assert output_of(execution) == {"second": [4, 8, 12, 16, 20], "beside": [6, 10, 14, 18, 22]}
    assert execution.events.filter(type=EventType.MAP_EXPANDED).count() == 3
