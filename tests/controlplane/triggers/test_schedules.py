"""Schedules: apply registers them with django-celery-beat, pause/resume/undeploy/rollback follow the
deployment, and each tick obeys the overlap policy. Ticks are driven by calling the service with a
given `now` (the e2e test has beat fire them for real)."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone as dt_timezone

import pytest
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from controlplane.deployments.services import deployment_pause, deployment_resume, deployment_rollback, deployment_undeploy
from controlplane.executions.models import Execution, ExecutionStatus, Trigger
from controlplane.triggers.models import FireStatus, Schedule, ScheduleFire
from controlplane.triggers.services import schedule_fire, schedules_start_buffered
from tests.controlplane.triggers.conftest import doc

pytestmark = pytest.mark.django_db

UTC = dt_timezone.utc
NIGHTLY = {"name": "nightly", "cron": "0 2 * * *", "timezone": "Europe/Paris"}


def at(minute: int, second: int = 0) -> datetime:
    return datetime(2026, 12, 1, 10, minute, second, tzinfo=UTC)


def every(name="tick", s=60, **kw):
    return {"name": name, "every_s": s, **kw}


def tasks_of(deployment) -> dict[str, PeriodicTask]:
    return {s.name: s.periodic_task for s in Schedule.objects.filter(deployment=deployment).select_related(
        "periodic_task__crontab", "periodic_task__interval")}


def finish(execution) -> None:
    Execution.objects.filter(pk=execution.pk).update(status=ExecutionStatus.SUCCEEDED)


def test_apply_registers_a_crontab_task_carrying_the_timezone(deploy):
    deployment = deploy(doc(schedules=[NIGHTLY, every("ping", 30)]))
    tasks = tasks_of(deployment)
    nightly = tasks["nightly"]
    assert nightly.task == "flowplane.schedule_fire" and nightly.enabled
    assert json.loads(nightly.kwargs) == {"schedule_id": Schedule.objects.get(name="nightly").pk}
    assert (nightly.crontab.minute, nightly.crontab.hour, str(nightly.crontab.timezone)) == ("0", "2", "Europe/Paris")
    assert tasks["ping"].interval.every == 30 and tasks["ping"].crontab is None


def test_a_schedule_removed_from_the_graph_is_removed_on_apply(deploy):
    deployment = deploy(doc(schedules=[NIGHTLY, every("ping")]))
    old_task = tasks_of(deployment)["ping"].pk
    deploy(doc(schedules=[{**NIGHTLY, "cron": "30 3 * * *"}]))
    tasks = tasks_of(deployment)
    assert set(tasks) == {"nightly"} and tasks["nightly"].crontab.hour == "3"
    assert not PeriodicTask.objects.filter(pk=old_task).exists()


def test_an_explicit_empty_list_removes_every_schedule_and_the_plan_says_so(deploy, api_plan):
    deployment = deploy(doc(schedules=[NIGHTLY]))
    plan = api_plan(doc(schedules=[]))
    assert "- schedule nightly 0 2 * * * Europe/Paris" in plan["text"]
    deploy(doc(schedules=[]))
    assert tasks_of(deployment) == {}
    assert not PeriodicTask.objects.filter(task="flowplane.schedule_fire").exists()


def test_pause_disables_resume_enables_undeploy_removes(deploy, owner):
    deployment = deploy(doc(schedules=[NIGHTLY]))
    deployment_pause(deployment=deployment, user=owner)
    assert tasks_of(deployment)["nightly"].enabled is False
    deployment_resume(deployment=deployment, user=owner)
    assert tasks_of(deployment)["nightly"].enabled is True
    deployment_undeploy(deployment=deployment, user=owner)
    assert not Schedule.objects.exists() and not PeriodicTask.objects.filter(task="flowplane.schedule_fire").exists()


def test_rollback_points_the_schedules_at_the_older_version(deploy, owner):
    first = deploy(doc(schedules=[every("old", 60)]))
    v1 = first.version
    deploy(doc(schedules=[every("new", 60)]))
    assert set(tasks_of(first)) == {"new"}
    deployment, _plan = deployment_rollback(deployment=first, version=v1, user=owner)
    assert set(tasks_of(deployment)) == {"old"} and tasks_of(deployment)["old"].enabled


def test_a_new_deployment_after_undeploy_takes_over(deploy, owner):
    first = deploy(doc(schedules=[every()]))
    deployment_undeploy(deployment=first, user=owner)
    second = deploy(doc(schedules=[every()]))
    assert second.pk != first.pk and set(tasks_of(second)) == {"tick"}


def test_a_fire_starts_a_run_recording_the_schedule_and_scheduled_time(deploy):
    deployment = deploy(doc(schedules=[every(s=60, input={"kind": "tick"})]))
    schedule = Schedule.objects.get()
    assert schedule_fire(schedule_id=schedule.pk, now=at(5, 30)) == {at(5).isoformat(): "started"}
    run = Execution.objects.get()
    assert run.trigger == Trigger.SCHEDULE and run.deployment_id == deployment.pk and run.input == {"kind": "tick"}
    assert run.trigger_details == {"schedule": "tick", "schedule_id": schedule.pk, "scheduled_at": at(5).isoformat()}
    assert run.created_by is None
    # the same tick delivered again (beat and a redelivery) starts nothing
    assert schedule_fire(schedule_id=schedule.pk, now=at(5, 50)) == {"status": "duplicate"}
    assert Execution.objects.count() == 1


def test_cron_fire_records_the_tick_in_its_timezone(deploy):
    deploy(doc(schedules=[NIGHTLY]))
    schedule = Schedule.objects.get()
    schedule_fire(schedule_id=schedule.pk, now=datetime(2026, 12, 1, 1, 0, 7, tzinfo=UTC))
    assert Execution.objects.get().trigger_details["scheduled_at"] == "2026-12-01T01:00:00+00:00"


def test_overlap_skip(deploy):
    deploy(doc(schedules=[every(overlap="skip")]))
    schedule = Schedule.objects.get()
    schedule_fire(schedule_id=schedule.pk, now=at(1))
    schedule_fire(schedule_id=schedule.pk, now=at(2))
    fires = list(ScheduleFire.objects.order_by("scheduled_at"))
    assert [f.status for f in fires] == [FireStatus.STARTED, FireStatus.SKIPPED]
    assert str(fires[0].execution_id) in fires[1].reason
    finish(fires[0].execution)
    schedule_fire(schedule_id=schedule.pk, now=at(3))
    assert Execution.objects.count() == 2


def test_overlap_buffer_one_queues_one_and_starts_it_when_the_run_ends(deploy):
    deploy(doc(schedules=[every(overlap="buffer_one")]))
    schedule = Schedule.objects.get()
    for minute in (1, 2, 3):
        schedule_fire(schedule_id=schedule.pk, now=at(minute))
    statuses = list(ScheduleFire.objects.order_by("scheduled_at").values_list("status", flat=True))
    assert statuses == [FireStatus.STARTED, FireStatus.BUFFERED, FireStatus.SKIPPED]
    assert schedules_start_buffered() == 0  # the first run still runs
    finish(Execution.objects.get())
    assert schedules_start_buffered() == 1
    buffered = ScheduleFire.objects.get(scheduled_at=at(2))
    assert buffered.status == FireStatus.STARTED and buffered.execution.trigger_details["scheduled_at"] == at(2).isoformat()
    assert Execution.objects.count() == 2 and schedules_start_buffered() == 0


def test_overlap_allow_all_starts_every_tick(deploy):
    deploy(doc(schedules=[every(overlap="allow_all")]))
    schedule = Schedule.objects.get()
    for minute in (1, 2, 3):
        schedule_fire(schedule_id=schedule.pk, now=at(minute))
    assert Execution.objects.filter(status=ExecutionStatus.RUNNING).count() == 3


def test_catch_up_fires_missed_ticks_within_the_window_only(deploy):
    deploy(doc(schedules=[every(overlap="allow_all", catchup_window_s=180)]))
    schedule = Schedule.objects.get()
    schedule_fire(schedule_id=schedule.pk, now=at(0))
    result = schedule_fire(schedule_id=schedule.pk, now=at(10))  # beat was down for 10 minutes
    assert list(result) == [at(m).isoformat() for m in (7, 8, 9, 10)]
    no_window = deploy(doc(schedules=[every(overlap="allow_all")]), workflow="other")
    other = Schedule.objects.get(deployment=no_window)
    schedule_fire(schedule_id=other.pk, now=at(0))
    assert list(schedule_fire(schedule_id=other.pk, now=at(10))) == [at(10).isoformat()]


def test_a_paused_deployment_refuses_the_tick(deploy, owner):
    deployment = deploy(doc(schedules=[every()]))
    deployment_pause(deployment=deployment, user=owner)
    schedule_fire(schedule_id=Schedule.objects.get().pk, now=at(1))
    assert ScheduleFire.objects.get().status == FireStatus.REFUSED and not Execution.objects.exists()


def test_schedules_api_lists_them_for_members_only(deploy, client_for, owner, outsider):
    deployment = deploy(doc(schedules=[NIGHTLY]))
    schedule_fire(schedule_id=Schedule.objects.get().pk, now=at(1))
    body = client_for(owner).get(f"/api/v1/schedules?deployment={deployment.pk}").json()
    assert [(s["name"], s["timezone"], s["enabled"]) for s in body["results"]] == [("nightly", "Europe/Paris", True)]
    fires = client_for(owner).get(f"/api/v1/schedules/{body['results'][0]['id']}/fires").json()
    assert [f["status"] for f in fires["results"]] == ["started"]
    assert client_for(outsider).get("/api/v1/schedules").json()["results"] == []
    assert client_for(outsider).get(f"/api/v1/schedules/{body['results'][0]['id']}/fires").status_code == 404


@pytest.fixture
def api_plan(client_for, owner):
    from controlplane.workflows.models import Workflow
    from tests.controlplane.triggers.conftest import publish

    def plan(graph, workflow="orders"):
        flow = Workflow.objects.get(slug=workflow)
        version = publish(flow, graph, user=owner)
        response = client_for(owner).post("/api/v1/plans", {"workflow": flow.pk, "version": version.number,
                                                           "environment": "prod"}, format="json")
        assert response.status_code == 201, response.json()
        return response.json()
    return plan


def test_applying_onto_a_paused_deployment_enables_its_unchanged_schedules(deploy, owner):
    deployment = deploy(doc(schedules=[NIGHTLY]))
    deployment_pause(deployment=deployment, user=owner)
    assert tasks_of(deployment)["nightly"].enabled is False
    deploy(doc(schedules=[NIGHTLY], params={"v": 2}))  # a new version, the same schedule; apply makes it active
    assert tasks_of(deployment)["nightly"].enabled is True


def test_apply_anchors_an_interval_on_the_epoch_grid_once_and_keeps_it(deploy):
    deployment = deploy(doc(schedules=[every("ping", 30), NIGHTLY]))
    tasks = tasks_of(deployment)
    anchor = tasks["ping"].start_time
    assert anchor.timestamp() % 30 == 0 and timezone.now() < anchor <= timezone.now() + timedelta(seconds=30)
    assert tasks["nightly"].start_time is None  # cron ticks are exact already
    deploy(doc(schedules=[every("ping", 30, overlap="allow_all"), NIGHTLY]))
    assert tasks_of(deployment)["ping"].start_time == anchor


def test_a_delayed_interval_tick_keeps_its_own_time_and_never_takes_the_next_ones(deploy):
    """Beat sends each tick's time; the one that waited in the queue past the next tick's time
    (it used to become that tick, and the next one a duplicate) is its own tick."""
    deploy(doc(schedules=[every(overlap="allow_all", catchup_window_s=120)]))
    schedule = Schedule.objects.get()

    late = schedule_fire(schedule_id=schedule.pk, scheduled_at=at(5).isoformat(), now=at(6, 5))
    on_time = schedule_fire(schedule_id=schedule.pk, scheduled_at=at(6).isoformat(), now=at(6, 6))
    again = schedule_fire(schedule_id=schedule.pk, scheduled_at=at(6).isoformat(), now=at(6, 40))  # redelivered

    assert (late, on_time, again) == ({at(5).isoformat(): "started"}, {at(6).isoformat(): "started"},
                                      {"status": "duplicate"})
    assert sorted(e.trigger_details["scheduled_at"] for e in Execution.objects.all()) == [
        at(5).isoformat(), at(6).isoformat()]


def test_a_tick_later_than_its_interval_and_window_is_recorded_skipped_not_run(deploy):
    deploy(doc(schedules=[every(overlap="allow_all")]))
    schedule = Schedule.objects.get()

    assert schedule_fire(schedule_id=schedule.pk, scheduled_at=at(5).isoformat(), now=at(6, 5)) == {
        at(5).isoformat(): "skipped"}
    assert schedule_fire(schedule_id=schedule.pk, scheduled_at=at(6).isoformat(), now=at(6, 6)) == {
        at(6).isoformat(): "started"}
    skipped = ScheduleFire.objects.get(scheduled_at=at(5))
    assert skipped.reason.startswith("late: delivered 65 s after its time") and skipped.execution is None
    assert Execution.objects.count() == 1


@pytest.mark.parametrize("sent, tick", [
    pytest.param("2026-12-01T10:05:17+00:00", at(5), id="off-grid-snapped"),
    pytest.param("not a time", at(7), id="not-a-time"),
    pytest.param("2026-12-01T10:05:00", at(7), id="naive"),
    pytest.param("2099-01-01T00:00:00+00:00", at(7), id="far-future"),
    pytest.param(["2026"], at(7), id="not-a-string"),
])
def test_a_bad_scheduled_at_falls_back_to_the_latest_tick_and_never_blocks_later_ones(deploy, sent, tick):
    deploy(doc(schedules=[every(overlap="allow_all")]))
    schedule = Schedule.objects.get()

    assert list(schedule_fire(schedule_id=schedule.pk, scheduled_at=sent, now=at(7, 30))) == [tick.isoformat()]
    assert list(schedule_fire(schedule_id=schedule.pk, scheduled_at=at(8).isoformat(), now=at(8, 1))) == [
        at(8).isoformat()]


def test_the_migration_anchors_interval_entries_registered_without_a_grid_and_back(deploy):
    import importlib

    from django.apps import apps

    migration = importlib.import_module("controlplane.triggers.migrations.0004_fixes_anchor_interval_schedules")
    deployment = deploy(doc(schedules=[every("ping", 30), NIGHTLY]))
    tasks = tasks_of(deployment)
    PeriodicTask.objects.filter(pk=tasks["ping"].pk).update(start_time=None)  # as registered before
    sweep = PeriodicTask.objects.create(name="other", task="flowplane.triggers_sweep", interval=tasks["ping"].interval)

    migration.anchor(apps, None)

    anchored = tasks_of(deployment)
    assert anchored["ping"].start_time.timestamp() % 30 == 0 and anchored["ping"].start_time > timezone.now()
    assert anchored["nightly"].start_time is None
    sweep.refresh_from_db()
    assert sweep.start_time is None  # only schedule fires
    migration.unanchor(apps, None)
    assert tasks_of(deployment)["ping"].start_time is None
