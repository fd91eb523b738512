"""Replays on real workers: from_step reuses upstream outputs (the reused step's endpoint is not
called again), a mocked step is not called, an exact replay calls everything again; a dead letter
replayed in place reruns the failed step and the run finishes."""
from __future__ import annotations

import pytest

from controlplane.executions.models import DeadLetter, ExecutionStatus, StepRun, StepStatus
from tests.controlplane.executions.builders import edges, job, make_deployment
from tests.e2e.engine_support import fleet, recorder, run_to_end, wait_for_end  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ONE_ATTEMPT = {"max_attempts": 1}


def http(node_id, recorder, path, **fields):
    return job(node_id, "http", config={"url": recorder.url(path), "method": "POST", "json": {}}, **fields)


def outputs(execution) -> dict:
    return dict(StepRun.objects.filter(execution=execution, is_compensation=False, status=StepStatus.SUCCEEDED)
                .values_list("node_id", "output"))


def calls(recorder) -> dict[str, int]:
    paths = recorder.paths()
    return {path: paths.count(path) for path in sorted(set(paths))}


def replay(api, execution, body) -> object:
    response = api.post(f"/api/v1/executions/{execution.pk}/replay", body, format="json")
    assert response.status_code == 201, response.json()
    return wait_for_end(response.json()["id"], timeout=30)


def test_replay_modes_reuse_mock_or_rerun_steps_counted_on_the_endpoint(
    fleet, recorder, project, owner, client_for
):
    deployment = make_deployment(project, [
        http("fetch", recorder, "/fetch"),
        http("enrich", recorder, "/enrich", group="load"),
        job("report", "log", group="load", config={"message": "done"}),
    ], edges(("fetch", "enrich"), ("enrich", "report")), user=owner)
    original = run_to_end(deployment, owner, input={"order": 1})
    assert original.status == ExecutionStatus.SUCCEEDED, original.error
    assert calls(recorder) == {"/enrich": 1, "/fetch": 1}
    api = client_for(owner)

    from_step = replay(api, original, {"mode": "from_step", "from_step": "enrich", "version": "pinned"})

    assert from_step.status == ExecutionStatus.SUCCEEDED, from_step.error
    assert calls(recorder) == {"/enrich": 2, "/fetch": 1}  # fetch was reused, not called
    assert outputs(from_step)["fetch"] == outputs(original)["fetch"]
    assert outputs(from_step)["enrich"]["body"]["effect"] == 2

    mocked = replay(api, original, {"mode": "modified", "mock": {"fetch": {"rows": []}}, "version": "active"})

    assert mocked.status == ExecutionStatus.SUCCEEDED, mocked.error
    assert calls(recorder) == {"/enrich": 3, "/fetch": 1}  # the mocked fetch was not called either
    assert outputs(mocked)["fetch"] == {"rows": []}

    exact = replay(api, original, {"mode": "exact", "version": "pinned"})

    assert exact.status == ExecutionStatus.SUCCEEDED and calls(recorder) == {"/enrich": 4, "/fetch": 2}
    assert {run.replay_of_id for run in (from_step, mocked, exact)} == {original.pk}


def test_a_dead_letter_replayed_in_place_reruns_the_failed_step_and_the_run_completes(
    fleet, recorder, project, owner, client_for
):
    deployment = make_deployment(project, [
        http("fetch", recorder, "/fetch"),
        http("charge", recorder, "/charge", group="load", retry=ONE_ATTEMPT),
        job("report", "jq", group="load", config={"program": "{charged: .steps.charge.output.body.ok}"}),
    ], edges(("fetch", "charge"), ("charge", "report")), user=owner)
    recorder.fail["/charge"] = 503
    failed = run_to_end(deployment, owner, input={"order": 7})
    assert failed.status == ExecutionStatus.FAILED, (failed.status, failed.error)
    letter = DeadLetter.objects.get(execution=failed)
    recorder.fail.pop("/charge")  # the payment provider is back

    response = client_for(owner).post(f"/api/v1/dead-letters/{letter.pk}/replay")

    assert response.status_code == 202, response.json()
    assert response.json()["id"] == str(failed.pk)
    finished = wait_for_end(failed.pk, timeout=30)
    assert finished.status == ExecutionStatus.SUCCEEDED, finished.error
    assert calls(recorder) == {"/charge": 2, "/fetch": 1}  # fetch ran once; charge failed, then was rerun
    assert outputs(finished)["report"] == {"charged": True}
    assert [r.status for r in StepRun.objects.filter(execution=finished, node_id="charge").order_by("attempt")] == [
        StepStatus.FAILED, StepStatus.SUCCEEDED]
    letter.refresh_from_db()
    assert (letter.status, letter.replay_execution_id) == ("replayed", failed.pk)
