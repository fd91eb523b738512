"""End-to-end failure handling: dead letters and saga compensation in reverse completion order."""
from __future__ import annotations

import pytest

from controlplane.executions.models import DeadLetter, EventType, ExecutionStatus, StepRun
from tests.controlplane.executions.builders import edges, job, make_deployment
from tests.e2e.engine_support import fleet, recorder, run_to_end  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

TWO_FAST_ATTEMPTS = {"max_attempts": 2, "initial_delay_s": 0.05, "max_delay_s": 0.1, "jitter": False}


def http(node_id, recorder, path, *, group="ingest", cancel=None, **fields):
    spec = job(node_id, "http", group=group, config={"url": recorder.url(path), "method": "POST", "json": {}}, **fields)
    if cancel:
        spec["compensate"] = {"type": "http", "config": {"url": recorder.url(cancel), "method": "POST"}}
    return spec


def test_final_failure_dead_letters_and_compensates_in_reverse(fleet, recorder, project, owner):
    recorder.fail["/book/car"] = 500
    deployment = make_deployment(project, [
        http("flight", recorder, "/book/flight", cancel="/cancel/flight"),
        http("hotel", recorder, "/book/hotel", group="load", cancel="/cancel/hotel"),
        http("car", recorder, "/book/car", cancel="/cancel/car", retry=TWO_FAST_ATTEMPTS),
    ], edges(("flight", "hotel"), ("hotel", "car")), user=owner)

    execution = run_to_end(deployment, owner)

    assert execution.status == ExecutionStatus.COMPENSATED
    assert recorder.paths() == [
        "/book/flight", "/book/hotel", "/book/car", "/book/car", "/cancel/hotel", "/cancel/flight",
    ]
    letter = DeadLetter.objects.get(execution=execution)
    assert (letter.node_id, letter.attempts) == ("car", 2)
    assert letter.payload["job"]["id"] == "car" and letter.payload["input"]["url"].endswith("/book/car")
    assert letter.error["details"]["status"] == 500
    compensations = StepRun.objects.filter(execution=execution, is_compensation=True).order_by("completed_seq")
    assert [(c.node_id, c.worker) for c in compensations] == [("hotel", "load1@e2e"), ("flight", "ingest1@e2e")]
    types = list(execution.events.order_by("seq").values_list("type", flat=True))
    tail = types[types.index(EventType.STEP_DEAD_LETTERED):]
    assert tail == [
        EventType.STEP_DEAD_LETTERED, EventType.EXECUTION_FAILED, EventType.SAGA_COMPENSATING,
        EventType.STEP_COMPENSATED, EventType.STEP_COMPENSATED, EventType.SAGA_COMPENSATED,
    ]
    statuses = dict(StepRun.objects.filter(execution=execution, is_compensation=False, attempt=1)
                    .values_list("node_id", "status"))
    assert statuses == {"flight": "compensated", "hotel": "compensated", "car": "failed"}


def test_a_failed_branch_of_a_fan_out_compensates_the_completed_branches(fleet, recorder, project, owner):
    deployment = make_deployment(project, [
        http("reserve", recorder, "/reserve", cancel="/release"),
        http("charge", recorder, "/charge", group="load", cancel="/refund"),
        # `ship` fails only after `charge` had time to complete: a branch that never started
        # has nothing to undo, so the test pins the order instead of racing it.
        job("hold", "delay", config={"seconds": 1}),
        job("ship", "fail", config={"retryable": False}),
        http("notify", recorder, "/notify"),
    ], edges(("reserve", "charge"), ("reserve", "hold"), ("hold", "ship"), ("charge", "notify"), ("ship", "notify")),
        user=owner)

    execution = run_to_end(deployment, owner)

    assert execution.status == ExecutionStatus.COMPENSATED
    paths = recorder.paths()
    assert "/notify" not in paths
    assert paths.count("/refund") == 1 and paths.count("/release") == 1
    assert paths.index("/refund") < paths.index("/release")  # charge completed after reserve
    assert execution.events.filter(type=EventType.SAGA_COMPENSATING).count() == 1
    assert execution.events.filter(type=EventType.EXECUTION_FAILED).count() == 1


def test_a_failure_with_nothing_to_undo_ends_failed(fleet, project, owner):
    deployment = make_deployment(project, [job("first"), job("boom", "fail", group="load", config={"retryable": False})],
                           edges(("first", "boom")), user=owner)

    execution = run_to_end(deployment, owner)

    assert execution.status == ExecutionStatus.FAILED
    assert execution.error["node_id"] == "boom"
    assert execution.events.filter(type=EventType.SAGA_COMPENSATED).get().data == {"compensated": []}
