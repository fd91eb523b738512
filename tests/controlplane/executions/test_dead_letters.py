"""Dead letters without workers: replay in place (the run continues and finishes) or as a from_step
run, with a modified input; discard with a reason; filters, inspect and bulk replay; who did it."""
from __future__ import annotations

import pytest

from controlplane.executions.models import DeadLetter, EventType, Execution, ExecutionStatus, StepRun, StepStatus
from controlplane.executions.services import (
    Delivery,
    dead_letter_rerun_execute,
    execution_start,
    saga_finish,
    step_execute,
)
from controlplane.tenancy.models import Role
from tests.controlplane.executions.builders import deploy_version, edges, job, make_deployment, make_version
from tests.factories import add_member

pytestmark = pytest.mark.django_db

DELIVERY = Delivery(task_id="t-1", worker="ingest1@unit", queue="wg.acme.ingest")
LETTERS = "/api/v1/dead-letters"


def nodes():
    """a -> charge -> c; charge's jq program fails (not retryable) until it is given another."""
    return [job("a", "jq", config={"program": "{a: .trigger.order}"}),
            job("charge", "jq", config={"program": 'error("card declined")'}),
            job("c", "jq", config={"program": "{c: .steps.charge.output}"})], edges(("a", "charge"), ("charge", "c"))


def step(execution, node, delivery=DELIVERY, final=False):
    return step_execute(execution_id=execution.pk, node_id=node, shard=0, shard_count=1, delivery=delivery,
                        final=final)


@pytest.fixture
def deployment(groups, project, owner):
    return make_deployment(project, *nodes(), user=owner)


def failed_run(deployment, owner, order=1, *, saga_done=True) -> DeadLetter:
    """Given a run whose `charge` failed for good (and, with `saga_done`, whose saga found nothing
    to undo: failed); its dead letter."""
    execution, _ = execution_start(deployment=deployment, input={"order": order}, user=owner)
    step(execution, "a")
    assert step(execution, "charge").action == "fail"
    if saga_done:
        saga_finish(execution_id=execution.pk, delivery=DELIVERY)
    return DeadLetter.objects.get(execution=execution)


def test_a_failed_run_continues_in_place_with_a_modified_input_and_finishes(
    deployment, owner, client_for, django_capture_on_commit_callbacks
):
    letter = failed_run(deployment, owner)
    execution = letter.execution
    assert Execution.objects.get(pk=execution.pk).status == ExecutionStatus.FAILED

    with django_capture_on_commit_callbacks() as published:
        response = client_for(owner).post(f"{LETTERS}/{letter.pk}/replay",
                                          {"input": {"program": "{charged: true}"}}, format="json")

    assert response.status_code == 202, response.json()
    assert (response.json()["id"], response.json()["status"]) == (str(execution.pk), "running")
    assert len(published) == 1  # the rerun task, after commit
    with django_capture_on_commit_callbacks() as carried:
        outcome = dead_letter_rerun_execute(dead_letter_id=letter.pk, delivery=DELIVERY)
    assert outcome.action == "done" and len(carried) == 1  # the canvas again
    assert step(execution, "a").detail == "already recorded; not run again"
    assert step(execution, "charge").detail == "already recorded; not run again"
    assert step(execution, "c", final=True).action == "done"
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.SUCCEEDED and execution.error is None
    runs = StepRun.objects.filter(execution=execution, node_id="charge").order_by("attempt")
    assert [(r.attempt, r.status) for r in runs] == [(1, StepStatus.FAILED), (2, StepStatus.SUCCEEDED)]
    assert runs[1].input == {"program": "{charged: true}"}
    assert StepRun.objects.get(execution=execution, node_id="c").output == {"c": {"charged": True}}
    assert StepRun.objects.filter(execution=execution, node_id="a").count() == 1
    letter.refresh_from_db()
    assert (letter.status, letter.replay_execution_id, letter.resolved_by) == ("replayed", execution.pk, owner)
    replayed = execution.events.get(type=EventType.DEAD_LETTER_REPLAYED).data
    assert (replayed["by"], replayed["outcome"], replayed["input_modified"]) == (owner.username, "continued", True)
    assert execution.events.filter(type=EventType.EXECUTION_CONTINUED).count() == 1


def test_a_rerun_that_fails_again_fails_the_run_and_opens_the_letter_again(
    deployment, owner, client_for, django_capture_on_commit_callbacks
):
    letter = failed_run(deployment, owner)
    assert client_for(owner).post(f"{LETTERS}/{letter.pk}/replay").status_code == 202

    with django_capture_on_commit_callbacks():
        outcome = dead_letter_rerun_execute(dead_letter_id=letter.pk, delivery=DELIVERY)

    assert outcome.action == "fail"
    letter.refresh_from_db()
    assert (letter.status, letter.attempts) == ("pending", 2)
    assert Execution.objects.get(pk=letter.execution_id).status == ExecutionStatus.COMPENSATING
    assert dead_letter_rerun_execute(dead_letter_id=letter.pk, delivery=DELIVERY).action == "ignore"  # a duplicate


def test_a_run_that_cannot_continue_is_replayed_from_the_failed_step_reusing_upstream_outputs(
    deployment, owner, client_for
):
    letter = failed_run(deployment, owner, order=5, saga_done=False)  # still compensating: cannot continue

    response = client_for(owner).post(f"{LETTERS}/{letter.pk}/replay", {"input": {"program": '"fixed"'}},
                                      format="json")

    assert response.status_code == 201, response.json()
    replay = Execution.objects.get(pk=response.json()["id"])
    assert (replay.replay_of_id, replay.replay_mode, replay.trigger) == (letter.execution_id, "from_step", "replay")
    assert replay.job("charge")["config"] == {"program": '"fixed"'}  # the modified input is its config
    reused = StepRun.objects.get(execution=replay, node_id="a")
    assert (reused.status, reused.output) == (StepStatus.SUCCEEDED, {"a": 5})
    assert not StepRun.objects.filter(execution=replay, node_id="charge").exists()
    assert step(replay, "charge").action == "done" and step(replay, "c", final=True).action == "done"
    replay.refresh_from_db()
    assert replay.status == ExecutionStatus.SUCCEEDED
    assert StepRun.objects.get(execution=replay, node_id="c").output == {"c": "fixed"}
    data = letter.execution.events.get(type=EventType.DEAD_LETTER_REPLAYED).data
    assert (data["outcome"], data["execution"]) == ("from_step", str(replay.pk))


def test_a_newer_version_deployed_since_is_what_a_letter_replays_on(deployment, project, owner, client_for):
    letter, other = failed_run(deployment, owner), failed_run(deployment, owner)
    fixed = [job("a", "jq", config={"program": "{a: .trigger.order}"}), job("charge", "jq", config={"program": "1"}),
             job("c", "noop")]
    deploy_version(make_version(project, fixed, edges(("a", "charge"), ("charge", "c")), user=owner,
                                workflow=deployment.workflow), user=owner)

    response = client_for(owner).post(f"{LETTERS}/{letter.pk}/replay")

    assert response.status_code == 201 and response.json()["version_number"] == 2
    pinned = client_for(owner).post(f"{LETTERS}/{other.pk}/replay", {"version": "pinned"}, format="json")
    assert pinned.status_code == 201 and pinned.json()["version_number"] == 1


def test_discard_needs_a_reason_records_who_and_closes_the_letter(deployment, owner, company, client_for):
    letter = failed_run(deployment, owner)
    viewer = add_member(company, role=Role.VIEWER)
    url = f"{LETTERS}/{letter.pk}/discard"

    assert client_for(viewer).post(url, {"reason": "dup"}, format="json").status_code == 403
    blank = client_for(owner).post(url, {"reason": "  "}, format="json")
    assert blank.status_code == 400
    response = client_for(owner).post(url, {"reason": "refunded by hand"}, format="json")

    assert response.status_code == 200, response.json()
    assert (response.json()["status"], response.json()["discard_reason"], response.json()["resolved_by"]) == (
        "discarded", "refunded by hand", owner.username)
    event = letter.execution.events.get(type=EventType.DEAD_LETTER_DISCARDED).data
    assert (event["by"], event["reason"]) == (owner.username, "refunded by hand")
    again = client_for(owner).post(f"{LETTERS}/{letter.pk}/replay")
    assert (again.status_code, again.json()["error"]) == (409, "discarded")
    assert client_for(owner).post(url, {"reason": "x"}, format="json").status_code == 409


def test_letters_are_filtered_inspected_per_tenant_and_bulk_replayed(
    deployment, owner, company, outsider, client_for, groups, project
):
    first, second = failed_run(deployment, owner, 1), failed_run(deployment, owner, 2)
    other = make_deployment(project, [job("boom", "fail", config={"retryable": False})], user=owner)
    execution, _ = execution_start(deployment=other, input={}, user=owner)
    step(execution, "boom")
    third = DeadLetter.objects.get(execution=execution)
    viewer = add_member(company, role=Role.VIEWER)

    def ids(query="", user=viewer):
        response = client_for(user).get(f"{LETTERS}{query}")
        assert response.status_code == 200, response.json()
        return [row["id"] for row in response.json()["results"]]

    assert ids("?node=charge") == [second.pk, first.pk]
    assert ids(f"?deployment={other.pk}") == [third.pk]
    assert ids(f"?workflow={deployment.workflow_id}&status=open") == [second.pk, first.pk]
    assert ids(f"?created_before={first.created_at.isoformat().replace('+00:00', 'Z')}") == []
    assert ids(user=outsider) == []
    detail = client_for(viewer).get(f"{LETTERS}/{first.pk}").json()
    assert (detail["job"]["id"], detail["input"], detail["status"]) == (
        "charge", {"program": 'error("card declined")'}, "pending")
    assert client_for(outsider).get(f"{LETTERS}/{first.pk}").status_code == 404

    bulk = client_for(owner).post(f"{LETTERS}/replay", {"node": "charge"}, format="json")

    assert bulk.status_code == 200, bulk.json()
    assert [(r["dead_letter"], r["outcome"]) for r in bulk.json()["results"]] == [
        (first.pk, "continued"), (second.pk, "continued")]
    assert ids("?status=replayed") == [second.pk, first.pk] and ids("?status=pending") == [third.pk]
    refused = client_for(viewer).post(f"{LETTERS}/replay", {}, format="json").json()["results"]
    assert [(r["dead_letter"], r["error"]) for r in refused] == [(third.pk, "insufficient_role")]
