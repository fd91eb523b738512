"""Beat's scheduler (`workers/beat.py`): a deployment schedule's interval entry is due on its grid
(`start_time + n * every`), however late each send was, and each send carries its tick; other
entries are django-celery-beat's own. No beat process: entries are built from PeriodicTask rows
and asked at a given time (the e2e triggers test runs real beat)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone as dt_timezone

import pytest
from celery import schedules
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from workers.beat import GridInterval, GridModelEntry, with_tick
from workers.celery import app

UTC = dt_timezone.utc
ANCHOR = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def grid(now: datetime, every_s: int = 60) -> GridInterval:
    return GridInterval(timedelta(seconds=every_s), ANCHOR, nowfun=lambda: now, app=app)


def test_due_once_per_tick_whatever_the_last_sends_lateness():
    now = ANCHOR + timedelta(minutes=5, seconds=0.3)
    assert tuple(grid(now).is_due(ANCHOR + timedelta(minutes=4, seconds=0.2))) == (True, pytest.approx(59.7))
    assert tuple(grid(now).is_due(ANCHOR + timedelta(minutes=5, seconds=0.1))) == (False, pytest.approx(59.7))
    before = ANCHOR - timedelta(seconds=20)
    assert tuple(grid(before).is_due(before - timedelta(days=365 * 30))) == (False, pytest.approx(20))


def test_a_thousand_late_sends_leave_the_ticks_on_the_grid_where_plain_intervals_drift():
    """Each send 50 ms late: django-celery-beat's interval counts from the last send and drifts
    50 s in 1,000 ticks; the grid's ticks stay at anchor + n * 60."""
    last, plain_last, ticks = ANCHOR - timedelta(seconds=1), ANCHOR, []
    now = ANCHOR + timedelta(seconds=0.05)
    for _ in range(1000):
        schedule = grid(now)
        assert schedule.is_due(last).is_due
        ticks.append(schedule.tick())
        last = now
        plain_last = plain_last + timedelta(seconds=60.05)
        now = schedule.tick() + timedelta(seconds=60.05)
    assert ticks == [ANCHOR + timedelta(minutes=n) for n in range(1000)]
    assert plain_last - (ANCHOR + timedelta(minutes=1000)) == timedelta(seconds=50)


@pytest.mark.django_db
def test_only_a_schedule_fire_interval_with_a_start_time_runs_on_the_grid():
    every, _ = IntervalSchedule.objects.get_or_create(every=30, period=IntervalSchedule.SECONDS)
    cron = CrontabSchedule.objects.create(minute="0", hour="2")
    fire = PeriodicTask.objects.create(name="fire", task="flowplane.schedule_fire", interval=every,
                                       start_time=ANCHOR, kwargs='{"schedule_id": 7}')
    old = PeriodicTask.objects.create(name="old", task="flowplane.schedule_fire", interval=every)
    sweep = PeriodicTask.objects.create(name="sweep", task="flowplane.triggers_sweep", interval=every,
                                        start_time=ANCHOR)
    nightly = PeriodicTask.objects.create(name="nightly", task="flowplane.schedule_fire", crontab=cron)

    entries = {task.name: GridModelEntry(task, app=app) for task in (fire, old, sweep, nightly)}

    assert isinstance(entries["fire"].schedule, GridInterval) and entries["fire"].schedule.anchor == ANCHOR
    assert not any(isinstance(entries[name].schedule, GridInterval) for name in ("old", "sweep", "nightly"))
    assert isinstance(entries["sweep"].schedule, schedules.schedule)


@pytest.mark.django_db
def test_each_send_carries_its_tick_and_the_entry_keeps_its_own_kwargs():
    every, _ = IntervalSchedule.objects.get_or_create(every=30, period=IntervalSchedule.SECONDS)
    task = PeriodicTask.objects.create(name="fire", task="flowplane.schedule_fire", interval=every,
                                       start_time=ANCHOR, kwargs='{"schedule_id": 7}')
    entry = GridModelEntry(task, app=app)
    now = ANCHOR + timedelta(minutes=3, seconds=40)
    entry.schedule = grid(now, every_s=30)

    sent = with_tick(entry)

    assert sent.kwargs == {"schedule_id": 7, "scheduled_at": "2026-12-01T10:03:30+00:00"}
    assert entry.kwargs == {"schedule_id": 7}
    sweep = PeriodicTask.objects.create(name="sweep", task="flowplane.triggers_sweep", interval=every)
    plain = GridModelEntry(sweep, app=app)
    assert with_tick(plain) is plain
