"""A map node's gate and items without workers: items recorded once, a bad list fails the step,
each item runs the child step on its own item, the empty join, compensation per item."""
from __future__ import annotations

import pytest
from django.db import transaction

from controlplane.executions.models import DeadLetter, EventType, ExecutionStatus, StepRun, StepStatus
from controlplane.executions.services import Delivery, execution_start, locked_execution, merge_execute, step_execute
from controlplane.executions.services.map_gate import map_gate_open
from pipelines.canvas import Chord, MergeTask
from tests.controlplane.executions.builders import edges, job, make_deployment

pytestmark = pytest.mark.django_db

DELIVERY = Delivery(task_id="t-1", worker="ingest1@unit", queue="wg.acme.ingest",
                    request={"id": "t-1", "task": "flowplane.step"})
ITEMS = "{{ .steps.discover.output }}"


def each(items=ITEMS, step=None, **config):
    step = step or {"type": "jq", "config": {"program": "{item: .item, index: .item_index, n: .shard.count}"}}
    return job("each", "map", config={"items": items, "step": step, "max_parallel": 2, **config})


def start(project, owner, nodes, edge_list, input=None, params=None):
    deployment = make_deployment(project, nodes, edge_list, user=owner, params=params)
    execution, _ = execution_start(deployment=deployment, input=input or {}, user=owner)
    return execution


def started_map(project, owner, program="[range(.trigger.n)]", n=5, **config):
    """discover -> each (map) -> after, with discover recorded."""
    execution = start(project, owner, [job("discover", "jq", config={"program": program}), each(**config),
                                       job("after", "jq", config={"program": ".steps.each.output"})],
                      edges(("discover", "each"), ("each", "after")), input={"n": n})
    assert step_execute(execution_id=execution.pk, node_id="discover", shard=0, shard_count=1,
                        delivery=DELIVERY).status == StepStatus.SUCCEEDED
    return execution


def open_gate(execution):
    with transaction.atomic():
        locked = locked_execution(execution.pk)
        return map_gate_open(locked, locked.job("each"), None)


def expansions(execution):
    return list(execution.events.filter(type=EventType.MAP_EXPANDED).values_list("data", flat=True))


def run_item(execution, index, count):
    return step_execute(execution_id=execution.pk, node_id="each", shard=index, shard_count=count, delivery=DELIVERY)


class TestGate:
    def test_the_gate_records_the_items_once_and_returns_the_plan_of_their_lanes(self, groups, project, owner):
        execution = started_map(project, owner, n=5)

        opening = open_gate(execution)

        assert (opening.state, opening.count) == ("run", 5)
        assert isinstance(opening.plan, Chord) and opening.plan.body == MergeTask("each", 5, "ingest")
        assert [[t.shard for t in lane.items] for lane in opening.plan.header] == [[0, 2, 4], [1, 3]]
        assert expansions(execution) == [{"node_id": "each", "count": 5, "max_parallel": 2, "items": [0, 1, 2, 3, 4]}]

    def test_a_duplicate_or_re_driven_gate_creates_no_item_twice(self, groups, project, owner):
        execution = started_map(project, owner, n=3)
        first = open_gate(execution)
        seq = execution.events.count()

        again = open_gate(execution)

        assert again.plan == first.plan and execution.events.count() == seq
        assert len(expansions(execution)) == 1

    @pytest.mark.parametrize("program, reason", [
        pytest.param("{ids: [1]}", "not_a_list", id="an-object"),
        pytest.param("[range(7)]", "too_many", id="over-max-items"),
    ])
    def test_a_bad_list_fails_the_map_step_for_good_with_a_dead_letter(self, groups, project, owner, program,
                                                                        reason):
        execution = started_map(project, owner, program=program, max_items=6)

        opening = open_gate(execution)

        assert opening.state == "failed" and opening.error["code"] == "invalid_map_items"
        assert opening.error["details"]["reason"] == reason and opening.error["retryable"] is False
        execution.refresh_from_db()
        assert execution.status == ExecutionStatus.COMPENSATING
        run = StepRun.objects.get(execution=execution, node_id="each")
        assert (run.shard, run.status, run.error["details"]["reason"]) == (0, StepStatus.FAILED, reason)
        letter = DeadLetter.objects.get(execution=execution)
        assert (letter.node_id, letter.shard) == ("each", 0)
        assert execution.events.filter(type=EventType.STEP_DEAD_LETTERED).count() == 1
        assert expansions(execution) == []
        # Asked again (a duplicate advance): the same answer, nothing recorded twice.
        assert open_gate(execution).state == "failed"
        assert DeadLetter.objects.filter(execution=execution).count() == 1

    def test_over_the_configured_ceiling_fails_even_without_max_items(self, groups, project, owner, settings):
        settings.FLOWPLANE_MAP_MAX_ITEMS = 4
        execution = started_map(project, owner, n=5)

        opening = open_gate(execution)

        assert opening.error["details"] == {"reason": "too_many", "path": "config.items", "count": 5, "max_items": 4}
        assert "over the map's maximum of 4" in opening.error["message"]


class TestItems:
    def test_each_item_runs_the_child_on_its_item_and_the_join_outputs_them_in_item_order(self, groups, project,
                                                                                            owner):
        execution = started_map(project, owner, n=3)
        open_gate(execution)

        for index in (2, 0, 1):  # lanes finish in any order
            assert run_item(execution, index, 3).status == StepStatus.SUCCEEDED
        assert merge_execute(execution_id=execution.pk, node_id="each", shards=3, delivery=DELIVERY).action == "done"
        after = step_execute(execution_id=execution.pk, node_id="after", shard=0, shard_count=1, delivery=DELIVERY)

        assert after.status == StepStatus.SUCCEEDED
        output = StepRun.objects.get(execution=execution, node_id="after").output
        assert output == [{"item": i, "index": i, "n": 3} for i in range(3)]
        runs = StepRun.objects.filter(execution=execution, node_id="each").order_by("shard")
        assert [(r.shard, r.shard_count, r.input["program"].startswith("{item")) for r in runs] == [
            (0, 3, True), (1, 3, True), (2, 3, True)]

    def test_a_duplicate_item_delivery_does_not_run_it_twice(self, groups, project, owner):
        execution = started_map(project, owner, n=2)
        open_gate(execution)
        run_item(execution, 0, 2)

        again = run_item(execution, 0, 2)

        assert (again.action, again.status) == ("done", StepStatus.SUCCEEDED)
        assert StepRun.objects.filter(execution=execution, node_id="each", shard=0).count() == 1

    def test_the_join_waits_while_an_item_is_pending(self, groups, project, owner):
        execution = started_map(project, owner, n=2)
        open_gate(execution)
        run_item(execution, 1, 2)

        outcome = merge_execute(execution_id=execution.pk, node_id="each", shards=2, delivery=DELIVERY)

        assert outcome.action == "wait"

    def test_an_item_the_gate_did_not_record_fails_for_good(self, groups, project, owner):
        execution = started_map(project, owner, n=2)
        open_gate(execution)

        outcome = run_item(execution, 5, 6)

        assert outcome.action == "fail"
        assert StepRun.objects.get(execution=execution, node_id="each", shard=5).error["details"]["reason"] == \
            "no_such_item"

    def test_an_empty_list_joins_with_an_empty_output_once(self, groups, project, owner):
        execution = started_map(project, owner, n=0)
        opening = open_gate(execution)
        assert opening.plan == MergeTask("each", 0, "ingest")

        for _ in range(2):  # a duplicate join records nothing twice
            assert merge_execute(execution_id=execution.pk, node_id="each", shards=0, delivery=DELIVERY).action == "done"
        after = step_execute(execution_id=execution.pk, node_id="after", shard=0, shard_count=1, delivery=DELIVERY)

        assert after.status == StepStatus.SUCCEEDED
        assert StepRun.objects.get(execution=execution, node_id="after").output == []
        join = StepRun.objects.get(execution=execution, node_id="each")
        assert (join.shard, join.shard_count, join.output) == (0, 0, [])

    def test_items_come_from_this_runs_context_only(self, groups, project, owner):
        other = started_map(project, owner, program='["other-tenant-secret"]')
        execution = started_map(project, owner, program="[.. | strings | select(test(\"secret\"))]")
        open_gate(other)

        opening = open_gate(execution)

        assert opening.count == 0 and expansions(execution)[0]["items"] == []


class TestSegments:
    def test_the_advance_opens_the_map_gate_and_publishes_its_segment_once(self, groups, project, owner):
        from controlplane.executions.services.segments import segment_advance

        execution = started_map(project, owner, n=3)

        assert segment_advance(execution.pk) == "segment 1 dispatched"
        assert segment_advance(execution.pk) == "segment 1 already dispatched"

        assert len(expansions(execution)) == 1
        assert execution.events.filter(type=EventType.SEGMENT_DISPATCHED).count() == 1

    def test_a_gate_that_failed_its_step_ends_the_advance_without_publishing(self, groups, project, owner):
        from controlplane.executions.services.segments import segment_advance

        execution = started_map(project, owner, program="{ids: 1}")

        assert segment_advance(execution.pk) == "a gate of segment 1 ended the run: compensating"

        assert not execution.events.filter(type=EventType.SEGMENT_DISPATCHED).exists()
        assert segment_advance(execution.pk) == "ignored: execution is compensating"


class TestDeadLetters:
    def failed_item(self, project, owner, step):
        from controlplane.executions.services import saga_finish

        execution = started_map(project, owner, n=3, step=step)
        open_gate(execution)
        assert run_item(execution, 1, 3).action == "fail"
        saga_finish(execution_id=execution.pk, delivery=DELIVERY)  # nothing to undo: failed
        return DeadLetter.objects.get(execution=execution)

    @pytest.mark.parametrize("step, body, output", [
        pytest.param({"type": "fail", "config": {"fail_attempts": 1}}, {}, {"attempt": 2, "failed_attempts": 1},
                     id="as-deployed"),
        pytest.param({"type": "jq", "config": {"program": 'if .item == 1 then error("no") else . end'}},
                     {"input": {"program": "{fixed: .item, index: .item_index}"}}, {"fixed": 1, "index": 1},
                     id="modified-input"),
    ])
    def test_a_dead_lettered_item_reruns_in_place_on_its_own_item(self, groups, project, owner, client_for,
                                                                  django_capture_on_commit_callbacks, step, body,
                                                                  output):
        from controlplane.executions.services import dead_letter_rerun_execute

        letter = self.failed_item(project, owner, step)
        with django_capture_on_commit_callbacks():
            response = client_for(owner).post(f"/api/v1/dead-letters/{letter.pk}/replay", body, format="json")
        assert response.status_code == 202, response.json()

        with django_capture_on_commit_callbacks():
            outcome = dead_letter_rerun_execute(dead_letter_id=letter.pk, delivery=DELIVERY)

        assert outcome.action == "done", outcome
        rerun = StepRun.objects.get(execution=letter.execution, node_id="each", shard=1, attempt=2)
        assert (rerun.status, rerun.output) == (StepStatus.SUCCEEDED, output)


class TestReplay:
    def finished(self, project, owner, n):
        execution = started_map(project, owner, n=n)
        opening = open_gate(execution)
        for index in range(opening.count):
            run_item(execution, index, opening.count)
        merge_execute(execution_id=execution.pk, node_id="each", shards=opening.count, delivery=DELIVERY)
        step_execute(execution_id=execution.pk, node_id="after", shard=0, shard_count=1, delivery=DELIVERY,
                     final=True)
        execution.refresh_from_db()
        assert execution.status == ExecutionStatus.SUCCEEDED, execution.error
        return execution

    @pytest.mark.parametrize("n", [0, 3])
    def test_a_replay_from_after_the_map_reuses_every_item_and_its_items(self, groups, project, owner, n):
        from controlplane.executions.models import ReplayMode
        from controlplane.executions.services import execution_replay

        original = self.finished(project, owner, n)

        replay = execution_replay(execution=original, user=owner, mode=ReplayMode.FROM_STEP, version="pinned",
                                  from_step="after")

        reused = StepRun.objects.filter(execution=replay, node_id="each").order_by("shard")
        assert [(r.shard, r.shard_count) for r in reused] == ([(0, 0)] if n == 0 else [(i, n) for i in range(n)])
        assert expansions(replay) == expansions(original)
        step_execute(execution_id=replay.pk, node_id="after", shard=0, shard_count=1, delivery=DELIVERY)
        assert StepRun.objects.get(execution=replay, node_id="after").output == StepRun.objects.get(
            execution=original, node_id="after").output

    def test_a_mocked_map_records_one_item_per_output(self, groups, project, owner):
        from controlplane.executions.models import ReplayMode
        from controlplane.executions.services import execution_replay

        original = self.finished(project, owner, 1)

        replay = execution_replay(execution=original, user=owner, mode=ReplayMode.MODIFIED, version="pinned",
                                  mock={"each": ["x", "y"]})

        mocked = StepRun.objects.filter(execution=replay, node_id="each").order_by("shard")
        assert [(r.shard, r.shard_count, r.output) for r in mocked] == [(0, 2, "x"), (1, 2, "y")]


def test_a_chained_workflow_sees_a_final_maps_items_as_a_list(groups, project, owner):
    from controlplane.triggers.services.chains import upstream_output

    execution = start(project, owner, [job("discover", "jq", config={"program": "[1]"}), each()],
                      edges(("discover", "each")))
    step_execute(execution_id=execution.pk, node_id="discover", shard=0, shard_count=1, delivery=DELIVERY)
    open_gate(execution)
    run_item(execution, 0, 1)

    assert upstream_output(execution) == {"each": [{"item": 1, "index": 0, "n": 1}]}


@pytest.mark.parametrize("message, expected", [
    pytest.param("item {{ .item }} of {{ .params.region }}", "item 1 of eu", id="statuses-only"),
    pytest.param("item {{ .item }} of {{ .steps.discover.output | length }}", "item 1 of 2", id="with-outputs"),
])
def test_an_item_whose_child_reads_only_its_item_claims_without_upstream_outputs(groups, project, owner, message,
                                                                                 expected):
    execution = start(project, owner, [
        job("discover", "jq", config={"program": "[0, 1]"}),
        each(step={"type": "log", "config": {"message": message}}),
    ], edges(("discover", "each")), params={"region": "eu"})
    step_execute(execution_id=execution.pk, node_id="discover", shard=0, shard_count=1, delivery=DELIVERY)
    open_gate(execution)

    assert run_item(execution, 1, 2).status == StepStatus.SUCCEEDED
    assert StepRun.objects.get(execution=execution, node_id="each", shard=1).output == {"message": expected}


def test_a_failed_map_gates_dead_letter_points_to_a_replay_from_the_map(groups, project, owner, client_for,
                                                                        django_capture_on_commit_callbacks):
    from controlplane.executions.models import ReplayMode
    from controlplane.executions.services import execution_replay, saga_finish

    execution = started_map(project, owner, program="{ids: 1}")
    open_gate(execution)
    saga_finish(execution_id=execution.pk, delivery=DELIVERY)
    letter = DeadLetter.objects.get(execution=execution)

    response = client_for(owner).post(f"/api/v1/dead-letters/{letter.pk}/replay", {}, format="json")

    assert (response.status_code, response.json()["error"]) == (409, "map_items_not_replayable")
    assert "from_step" in response.json()["detail"]
    with django_capture_on_commit_callbacks():
        replay = execution_replay(execution=execution, user=owner, mode=ReplayMode.FROM_STEP, version="pinned",
                                  from_step="each")
    assert StepRun.objects.get(execution=replay, node_id="discover").output == {"ids": 1}  # reused
    assert not StepRun.objects.filter(execution=replay, node_id="each").exists()  # its gate opens again
