"""A paused or archived workflow starts no runs, by any trigger: the API (409), a webhook (409,
no delivery recorded), a schedule tick (refused fire, no run), a chained upstream; resuming it
(status active) restores each. Deployment status is unchanged throughout."""
from __future__ import annotations

import pytest

from controlplane.deployments.models import DeploymentStatus
from controlplane.executions.models import Execution
from controlplane.executions.services import execution_start
from controlplane.triggers.models import ChainRun, FireStatus, HookDelivery, Schedule, ScheduleFire
from controlplane.triggers.services import chains_fire, schedule_fire
from controlplane.workflows.models import WorkflowAuditEvent, WorkflowStatus
from controlplane.workflows.services import workflow_set_status
from tests.controlplane.triggers.conftest import doc
from tests.controlplane.triggers.test_chains import finished_run
from tests.controlplane.triggers.test_hooks import deliver
from tests.controlplane.triggers.test_schedules import at, every

pytestmark = pytest.mark.django_db

STOPPED = [WorkflowStatus.PAUSED, WorkflowStatus.ARCHIVED]


@pytest.fixture
def deployment(deploy):
    return deploy(doc(schedules=[every(s=60)]))


@pytest.fixture
def api(client_for, owner):
    return client_for(owner)


def set_status(api, deployment, status):
    response = api.post(f"/api/v1/workflows/{deployment.workflow_id}/status", {"status": status}, format="json")
    assert response.status_code == 200, response.json()


@pytest.mark.parametrize("status", STOPPED)
def test_the_api_refuses_a_run_with_409_until_the_workflow_is_active_again(api, deployment, status):
    set_status(api, deployment, status)

    for body in ({"deployment": deployment.pk}, {"workflow": deployment.workflow_id}):
        response = api.post("/api/v1/executions", body, format="json")
        assert response.status_code == 409, response.json()
        assert response.json()["error"] == f"workflow_{status}" and response.json()["path"] == "workflow"
    assert not Execution.objects.exists()
    deployment.refresh_from_db()
    assert deployment.status == DeploymentStatus.ACTIVE  # the deployment itself is untouched

    set_status(api, deployment, "active")
    assert api.post("/api/v1/executions", {"deployment": deployment.pk}, format="json").status_code == 201


@pytest.mark.parametrize("status", STOPPED)
def test_an_idempotent_repeat_of_a_run_started_before_the_pause_still_answers(api, deployment, owner, status):
    first, _ = execution_start(deployment=deployment, input={}, user=owner, idempotency_key="k1")
    set_status(api, deployment, status)

    again = api.post("/api/v1/executions", {"deployment": deployment.pk, "idempotency_key": "k1"}, format="json")

    assert again.status_code == 200 and again.json()["id"] == str(first.pk)
    assert Execution.objects.count() == 1


@pytest.mark.parametrize("status", STOPPED)
def test_a_webhook_delivery_is_409_and_not_recorded(api, deployment, status):
    hook = api.post("/api/v1/webhooks", {"deployment": deployment.pk, "name": "orders"}, format="json").json()
    set_status(api, deployment, status)

    response = deliver(hook, {"order": 1}, delivery="d-1")

    assert (response.status_code, response.json()["error"]) == (409, f"workflow_{status}")
    assert not HookDelivery.objects.exists() and not Execution.objects.exists()
    set_status(api, deployment, "active")
    assert deliver(hook, {"order": 1}, delivery="d-1").status_code == 201  # the same delivery, now accepted


@pytest.mark.parametrize("status", STOPPED)
def test_a_schedule_tick_starts_nothing_and_resume_restores_it(api, deployment, status):
    schedule = Schedule.objects.get(deployment=deployment)
    set_status(api, deployment, status)

    schedule_fire(schedule_id=schedule.pk, now=at(1))

    fire = ScheduleFire.objects.get()
    assert fire.status == FireStatus.REFUSED and status in fire.reason
    assert not Execution.objects.exists()
    set_status(api, deployment, "active")
    assert schedule_fire(schedule_id=schedule.pk, now=at(2)) == {at(2).isoformat(): "started"}


def test_a_chained_run_of_a_paused_workflow_is_refused(deploy, owner):
    upstream = deploy(doc(), workflow="up")
    downstream = deploy(doc(on={"workflow": "up", "status": "succeeded"}), workflow="down")
    workflow_set_status(user=owner, workflow=downstream.workflow, status="paused")
    finished_run(upstream, owner)

    assert chains_fire() == 0

    assert not Execution.objects.filter(deployment=downstream).exists()
    assert ChainRun.objects.get().error["error"] == "workflow_paused"


def test_each_status_change_is_audited_once_with_who_and_what(api, deployment, owner):
    for status in ("paused", "paused", "archived", "active"):
        set_status(api, deployment, status)

    events = list(WorkflowAuditEvent.objects.filter(workflow_id=deployment.workflow_id).order_by("id"))
    assert [(e.kind, e.data["before"], e.data["after"]) for e in events] == [
        ("status_changed", "active", "paused"), ("status_changed", "paused", "archived"),
        ("status_changed", "archived", "active")]
    assert {e.actor_id for e in events} == {owner.pk}
    listed = api.get(f"/api/v1/workflows/{deployment.workflow_id}/audit").json()
    assert [e["data"]["after"] for e in listed["results"]] == ["active", "archived", "paused"]
    assert listed["results"][0]["actor"] == "owner"
