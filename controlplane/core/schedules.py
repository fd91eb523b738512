"""Periodic tasks the product needs, registered with django-celery-beat by migrations.

`periodic_task_operation` creates the PeriodicTask idempotently: an existing task of that name is
left as an operator may have tuned it (interval, enabled), and reversing removes it.
"""
from __future__ import annotations

from django.db import migrations


def periodic_task_operation(
    *, task: str, every_s: int, description: str, expire_seconds: int | None = None
) -> migrations.RunPython:
    def create(apps, schema_editor):
        IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
        PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
        schedule, _ = IntervalSchedule.objects.get_or_create(every=every_s, period="seconds")
        PeriodicTask.objects.get_or_create(
            name=task,
            defaults={"task": task, "interval": schedule, "enabled": True, "expire_seconds": expire_seconds,
                      "description": description},
        )

    def remove(apps, schema_editor):
        apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=task).delete()

    return migrations.RunPython(create, remove)
