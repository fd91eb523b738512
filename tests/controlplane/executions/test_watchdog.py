"""The watchdog re-drives a run that stopped making progress with nothing running, and fails it
with a reason after re-drives that changed nothing."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from controlplane.executions.models import EventType, ExecutionStatus, StepRun, StepStatus
from controlplane.executions.services import event_append, executions_redrive_stalled, locked_execution
from tests.controlplane.executions.builders import edges, job, make_deployment
from controlplane.executions.services import execution_start

pytestmark = pytest.mark.django_db


@pytest.fixture
def execution(groups, project, owner, settings):
    settings.EXECUTION_STALL_AFTER_S = 60
    settings.EXECUTION_MAX_REDRIVES = 2
    deployment = make_deployment(project, [job("a"), job("b")], edges(("a", "b")), user=owner)
    return execution_start(deployment=deployment, input={}, user=owner)[0]


def after(seconds: float):
    """A sweep this many seconds after the run's last event (events are append-only: time moves instead)."""
    return timezone.now() + timedelta(seconds=seconds)


def test_a_fresh_run_is_left_alone(execution, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as published:
        assert executions_redrive_stalled() == {"redriven": 0, "failed": 0}
    assert published == []


def test_a_run_idle_past_the_stall_with_nothing_running_gets_its_canvas_again(
    execution, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as published:
        assert executions_redrive_stalled(now=after(61)) == {"redriven": 1, "failed": 0}
    assert len(published) == 1
    event = execution.events.order_by("-seq").first()
    assert (event.type, event.data["redrives"], event.data["after"]) == (
        EventType.EXECUTION_REDRIVEN, 1, EventType.EXECUTION_STARTED)


def test_a_run_with_a_running_attempt_is_not_stalled(execution):
    StepRun.objects.create(execution=execution, node_id="a", group="ingest", queue="wg.acme.ingest",
                           status=StepStatus.RUNNING, worker="ingest1@unit", started_at=timezone.now())
    assert executions_redrive_stalled(now=after(600)) == {"redriven": 0, "failed": 0}


def test_a_retry_waiting_for_its_countdown_is_not_a_stall_until_the_countdown_is_over(execution):
    with_lock = locked_execution(execution.pk)
    event_append(execution=with_lock, type=EventType.STEP_RETRYING, data={"node_id": "a", "countdown_s": 300})
    assert executions_redrive_stalled(now=after(120))["redriven"] == 0
    assert executions_redrive_stalled(now=after(361))["redriven"] == 1


def test_re_drives_without_progress_fail_the_run_with_a_reason(execution, django_capture_on_commit_callbacks):
    # Each sweep comes a stall later than the re-drive before it.
    for expected in (1, 2):
        assert executions_redrive_stalled(now=after(61 * expected))["redriven"] == 1
        assert execution.events.order_by("-seq").first().data["redrives"] == expected
    with django_capture_on_commit_callbacks():
        assert executions_redrive_stalled(now=after(61 * 3)) == {"redriven": 0, "failed": 1}
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.COMPENSATING
    assert execution.error["error"]["details"] == {"reason": "stalled", "redrives": 2}


def test_progress_between_re_drives_resets_the_count(execution):
    executions_redrive_stalled(now=after(61))
    event_append(execution=locked_execution(execution.pk), type=EventType.STEP_STARTED, data={"node_id": "a"})
    executions_redrive_stalled(now=after(61 * 2))
    assert execution.events.order_by("-seq").first().data["redrives"] == 1
