"""Anchor the interval schedules registered before ticks had a grid.

Apply now sets an interval schedule's beat entry `start_time` to the first epoch-aligned tick
after it registers it, and beat fires `flowplane.schedule_fire` entries with a start time on that
grid (workers/beat.py). Entries registered earlier have none: this gives them one on the same
epoch grid their ticks were already counted on, so nothing moves but the delayed-tick collision
goes. Reversible: going back clears only the start times it set (they lie on the grid).
"""
from datetime import datetime, timedelta, timezone as dt_timezone

from django.db import migrations

FIRE_TASK = "flowplane.schedule_fire"
EPOCH = datetime(1970, 1, 1, tzinfo=dt_timezone.utc)


def first_tick_after(every_s: int, now: datetime) -> datetime:
    step = timedelta(seconds=every_s)
    return EPOCH + ((now - EPOCH) // step + 1) * step


def anchor(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    now = datetime.now(dt_timezone.utc)
    for task in PeriodicTask.objects.filter(task=FIRE_TASK, interval__isnull=False, start_time__isnull=True) \
            .select_related("interval"):
        if task.interval.period == "seconds" and task.interval.every > 0:
            task.start_time = first_tick_after(task.interval.every, now)
            task.save(update_fields=["start_time"])


def unanchor(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for task in PeriodicTask.objects.filter(task=FIRE_TASK, interval__isnull=False, start_time__isnull=False) \
            .select_related("interval"):
        if task.interval.every > 0 and (task.start_time - EPOCH) % timedelta(seconds=task.interval.every) == timedelta(0):
            task.start_time = None
            task.save(update_fields=["start_time"])


class Migration(migrations.Migration):
    dependencies = [
        ("triggers", "0003_fixes_chain_retries"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(anchor, unanchor)]
