"""Beat's scheduler: django-celery-beat's DatabaseScheduler, with interval schedules on a grid.

django-celery-beat runs an interval entry `every` seconds after its last send, so each send's
small lateness moves every later tick, and the run's scheduled time was whatever the clock said
when the task ran. Here a deployment schedule's interval entry (`flowplane.schedule_fire` with a
`start_time`) is due at `start_time + n * every`, whatever the last send's lateness, and each send
carries its tick as `scheduled_at`: a tick waiting in the queue keeps its own time and never takes
the next one's (controlplane/triggers/services/schedules.py). Every other entry runs unchanged.

    celery -A workers beat            # settings.CELERY_BEAT_SCHEDULER names this scheduler
"""
from __future__ import annotations

from datetime import datetime, timedelta

from celery import schedules
from django_celery_beat.schedulers import DatabaseScheduler as _DatabaseScheduler, ModelEntry

from controlplane.triggers.services.registry import FIRE_TASK
from pipelines.triggers import interval_tick


class GridInterval(schedules.schedule):
    """Due at `anchor + n * run_every` (n >= 0) once the last send was before that tick."""

    def __init__(self, run_every: timedelta, anchor: datetime, nowfun=None, app=None):
        super().__init__(run_every, nowfun=nowfun, app=app)
        self.anchor = anchor

    def tick(self, now: datetime | None = None) -> datetime:
        """The latest tick at or before `now` (the anchor itself before it)."""
        now = self.maybe_make_aware(now or self.now())
        return max(self.anchor, interval_tick(int(self.seconds), now, self.anchor))

    def is_due(self, last_run_at: datetime) -> schedules.schedstate:
        now = self.maybe_make_aware(self.now())
        tick = self.tick(now)
        if now < tick:  # before the first tick
            return schedules.schedstate(False, (tick - now).total_seconds())
        until_next = (tick + self.run_every - now).total_seconds()
        return schedules.schedstate(self.maybe_make_aware(last_run_at) < tick, until_next)

    def remaining_estimate(self, last_run_at: datetime) -> timedelta:
        now = self.maybe_make_aware(self.now())
        tick = self.tick(now)
        return tick - now if self.maybe_make_aware(last_run_at) < tick else tick + self.run_every - now

    def __eq__(self, other) -> bool:
        return isinstance(other, GridInterval) and (self.run_every, self.anchor) == (other.run_every, other.anchor)

    __hash__ = None

    def __reduce__(self):
        return self.__class__, (self.run_every, self.anchor, self.nowfun)

    def __repr__(self) -> str:
        return f"<every {self.human_seconds} from {self.anchor.isoformat()}>"


class GridModelEntry(ModelEntry):
    """A PeriodicTask row; a deployment schedule's interval entry runs on its grid."""

    def __init__(self, model, app=None):
        super().__init__(model, app=app)
        if model.task == FIRE_TASK and model.interval_id is not None and model.start_time is not None:
            base = self.schedule
            self.schedule = GridInterval(base.run_every, model.start_time, nowfun=base.nowfun, app=base.app)


class DatabaseScheduler(_DatabaseScheduler):
    Entry = GridModelEntry

    def apply_async(self, entry, producer=None, advance=True, **kwargs):
        return super().apply_async(with_tick(entry), producer, advance, **kwargs)


def with_tick(entry):
    """The entry to send: a grid entry's copy whose kwargs carry its tick as `scheduled_at` (the
    heap keeps the original), any other entry as it is."""
    if not isinstance(entry.schedule, GridInterval):
        return entry
    sent = object.__new__(type(entry))  # copy.copy would rebuild it through ScheduleEntry.__reduce__
    sent.__dict__.update(entry.__dict__)
    sent.kwargs = {**entry.kwargs, "scheduled_at": entry.schedule.tick().isoformat()}
    return sent
