"""Firing schedules: each beat tick of a schedule becomes a `ScheduleFire`, and a run unless the
overlap policy says otherwise.

- skip: a run of this schedule still pending or running -> the tick is recorded `skipped`.
- buffer_one: such a run -> the tick is `buffered` (at most one per schedule: a conditional unique
  constraint); the triggers sweep starts it once no run of the schedule is running any more.
  A further tick while one is buffered is `skipped`.
- allow_all: every tick starts a run.

The schedule row is locked while a tick is handled, so two deliveries of one tick, or a tick and the
sweep, never both start a run; `(schedule, scheduled_at)` is unique besides.

The scheduled time of a tick is its nominal time, never the moment the task happens to run:

- interval: `anchor + n * every_s`, the anchor being the beat entry's `start_time` (apply sets it
  to the first epoch-aligned tick after registering, so `every_s: 60` ticks on the minute; the
  epoch for entries registered before). Beat fires on that grid (`workers/beat.py`) and sends
  the tick's time as `scheduled_at`, so a tick that waited in the queue keeps its own time and
  cannot take the next one's. One that waited longer than its interval and the catch-up window
  is recorded `skipped` (late) instead of starting a run a whole interval behind. Without
  `scheduled_at` (a task sent by hand) the tick is the latest one at or before now.
- cron: the latest cron tick at or before the moment the task runs, in the schedule's timezone.

With a catch-up window, ticks missed while beat or the workers were down that are no older than
the window fire too (oldest first, through the overlap policy).
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from controlplane.core.errors import ApplicationError
from controlplane.deployments.models import DeploymentStatus
from controlplane.executions.models import ExecutionStatus, Trigger
from controlplane.executions.services.start import SYSTEM, execution_start
from controlplane.triggers.models import FireStatus, OverlapPolicy, Schedule, ScheduleFire
from controlplane.workflows.models import WorkflowStatus
from pipelines.cron import parse_cron
from pipelines.triggers import interval_tick

logger = logging.getLogger(__name__)

UNFINISHED = (ExecutionStatus.PENDING, ExecutionStatus.RUNNING, ExecutionStatus.COMPENSATING)
MAX_CATCHUP_TICKS = 20


def latest_tick(schedule: Schedule, now: datetime) -> datetime | None:
    if schedule.cron:
        return parse_cron(schedule.cron).previous(now, schedule.timezone)
    return interval_tick(schedule.every_s, now, schedule_anchor(schedule))


def schedule_anchor(schedule: Schedule) -> datetime | None:
    """The tick an interval schedule's grid counts from: its beat entry's start time."""
    task = schedule.periodic_task
    return task.start_time if task is not None else None


def nominal_tick(schedule: Schedule, scheduled_at: str | None, now: datetime) -> datetime | None:
    """The tick a delivery is for: the time beat sent with it (interval schedules), on the grid;
    else, or when that is not a time or lies more than an interval ahead, the latest tick by now."""
    if scheduled_at is None or schedule.cron:
        return latest_tick(schedule, now)
    try:
        sent = datetime.fromisoformat(scheduled_at)
    except (TypeError, ValueError):
        sent = None
    if sent is None or sent.tzinfo is None or sent > now + timedelta(seconds=schedule.every_s):
        logger.warning("schedule.bad_scheduled_at", extra={"schedule_id": schedule.pk, "scheduled_at": scheduled_at})
        return latest_tick(schedule, now)
    return interval_tick(schedule.every_s, sent, schedule_anchor(schedule))


def lateness(schedule: Schedule, tick: datetime, now: datetime) -> str:
    """Why an interval tick is too late to start a run ("" when it is not): it may start one within
    one interval of its time, or within the catch-up window when that is longer."""
    age = (now - tick).total_seconds()
    if schedule.cron or age <= max(schedule.every_s, schedule.catchup_window_s):
        return ""
    return (f"late: delivered {age:.0f} s after its time, more than the interval ({schedule.every_s} s) and "
            f"the catch-up window ({schedule.catchup_window_s} s)")


def missed_ticks(schedule: Schedule, tick: datetime) -> list[datetime]:
    """Ticks after the last one handled and before `tick`, within the catch-up window, oldest first."""
    if not schedule.catchup_window_s or schedule.last_tick_at is None:
        return []
    oldest = tick - timedelta(seconds=schedule.catchup_window_s)  # a tick exactly this old still fires
    if schedule.cron:
        start = max(schedule.last_tick_at, oldest - timedelta(microseconds=1))
        ticks = parse_cron(schedule.cron).ticks_between(start, tick, schedule.timezone, limit=MAX_CATCHUP_TICKS + 1)
        return [t for t in ticks if t < tick][-MAX_CATCHUP_TICKS:]
    out, t = [], tick - timedelta(seconds=schedule.every_s)
    while t > schedule.last_tick_at and t >= oldest and len(out) < MAX_CATCHUP_TICKS:
        out.append(t)
        t -= timedelta(seconds=schedule.every_s)
    return out[::-1]


def schedule_fire(*, schedule_id: int, scheduled_at: str | None = None, now: datetime | None = None) -> dict:
    """Handle one tick of `schedule_id` (beat's task; `scheduled_at`: the tick's time as beat sent
    it, see the module docstring); returns {tick: status}."""
    now = now or timezone.now()
    with transaction.atomic():
        schedule = (Schedule.objects.select_for_update(of=("self",))
                    .select_related("deployment__workflow", "periodic_task").filter(pk=schedule_id).first())
        if schedule is None:
            return {"status": "gone"}
        tick = nominal_tick(schedule, scheduled_at, now)
        if tick is None or (schedule.last_tick_at is not None and tick <= schedule.last_tick_at):
            return {"status": "duplicate"}
        late = lateness(schedule, tick, now)
        ticks = [] if late else [*missed_ticks(schedule, tick), tick]
        schedule.last_tick_at = tick
        schedule.save(update_fields=["last_tick_at", "updated_at"])
        fires = [_record(schedule, tick, FireStatus.SKIPPED, late)] if late else [_fire(schedule, t) for t in ticks]
    return {f.scheduled_at.isoformat(): f.status for f in fires if f is not None}


def _running(schedule: Schedule) -> ScheduleFire | None:
    return (ScheduleFire.objects.filter(schedule=schedule, status=FireStatus.STARTED,
                                        execution__status__in=UNFINISHED).order_by("-scheduled_at").first())


def _fire(schedule: Schedule, scheduled_at: datetime) -> ScheduleFire | None:
    if schedule.deployment.status != DeploymentStatus.ACTIVE:
        return _record(schedule, scheduled_at, FireStatus.REFUSED, f"deployment is {schedule.deployment.status}")
    workflow_status = schedule.deployment.workflow.status
    if workflow_status in (WorkflowStatus.PAUSED, WorkflowStatus.ARCHIVED):
        return _record(schedule, scheduled_at, FireStatus.REFUSED, f"workflow is {workflow_status}")
    running = None if schedule.overlap == OverlapPolicy.ALLOW_ALL else _running(schedule)
    if running is not None:
        if schedule.overlap == OverlapPolicy.BUFFER_ONE and not ScheduleFire.objects.filter(
                schedule=schedule, status=FireStatus.BUFFERED).exists():
            return _record(schedule, scheduled_at, FireStatus.BUFFERED, f"waits for run {running.execution_id}")
        why = "buffer already holds a run" if schedule.overlap == OverlapPolicy.BUFFER_ONE else "a run is running"
        return _record(schedule, scheduled_at, FireStatus.SKIPPED, f"{why}: {running.execution_id}")
    fire = _record(schedule, scheduled_at, FireStatus.STARTED, "")
    if fire is not None:
        _start(schedule, fire)
    return fire


def _record(schedule: Schedule, scheduled_at: datetime, status: str, reason: str) -> ScheduleFire | None:
    try:
        with transaction.atomic():
            fire = ScheduleFire.objects.create(schedule=schedule, scheduled_at=scheduled_at, status=status,
                                               reason=reason[:200])
    except IntegrityError:  # this tick was handled already (or the buffer filled meanwhile)
        return None
    logger.info("schedule.fire", extra={"schedule_id": schedule.pk, "scheduled_at": scheduled_at.isoformat(),
                                        "status": status, "reason": reason})
    return fire


def _start(schedule: Schedule, fire: ScheduleFire) -> None:
    when = fire.scheduled_at.isoformat()
    try:
        execution, _ = execution_start(
            deployment=schedule.deployment_id, input=dict(schedule.input or {}), user=SYSTEM,
            idempotency_key=f"schedule:{schedule.pk}:{when}", trigger=Trigger.SCHEDULE,
            trigger_details={"schedule": schedule.name, "schedule_id": schedule.pk, "scheduled_at": when},
        )
    except ApplicationError as exc:  # no live worker, deployment paused meanwhile ...
        fire.status, fire.reason = FireStatus.REFUSED, f"{exc.code}: {exc.detail}"[:200]
        fire.save(update_fields=["status", "reason", "updated_at"])
        return
    fire.execution = execution
    fire.save(update_fields=["execution", "updated_at"])


def schedules_start_buffered() -> int:
    """For the triggers sweep: start each buffered fire whose schedule has no run running now."""
    started = 0
    for fire_id, schedule_id in ScheduleFire.objects.filter(status=FireStatus.BUFFERED).values_list("id", "schedule_id"):
        with transaction.atomic():
            schedule = Schedule.objects.select_for_update(of=("self",)).select_related("deployment__workflow").filter(pk=schedule_id).first()
            fire = ScheduleFire.objects.filter(pk=fire_id, status=FireStatus.BUFFERED).first()
            if schedule is None or fire is None or _running(schedule) is not None:
                continue
            if schedule.deployment.status != DeploymentStatus.ACTIVE:
                fire.status, fire.reason = FireStatus.REFUSED, f"deployment is {schedule.deployment.status}"
                fire.save(update_fields=["status", "reason", "updated_at"])
                continue
            fire.status = FireStatus.STARTED
            fire.save(update_fields=["status", "updated_at"])
            _start(schedule, fire)
            started += fire.status == FireStatus.STARTED
    return started
