"""Schedule the engine sweep: a django-celery-beat PeriodicTask running `flowplane.sweep`.

The sweep marks workers whose heartbeat went stale offline (their running steps are recovered by the
fleet hook) and expires attempts stuck past their hard time limit, so beat recovers lost steps with
no operator. Idempotent: an existing task of that name is left as an operator may have tuned it.
"""
from django.conf import settings
from django.db import migrations

TASK = "flowplane.sweep"


def create_schedule(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    # About two heartbeats (5 s each by default): a dead worker is noticed soon after it goes stale.
    every = int(getattr(settings, "ENGINE_SWEEP_INTERVAL_S", 10))
    schedule, _ = IntervalSchedule.objects.get_or_create(every=every, period="seconds")
    PeriodicTask.objects.get_or_create(
        name=TASK,
        defaults={
            "task": TASK,
            "interval": schedule,
            "enabled": True,
            # A sweep nobody picked up within one interval is superseded by the next one.
            "expire_seconds": every,
            "description": "Mark stale workers offline and recover their running steps; expire attempts past "
            "their hard time limit.",
        },
    )


def remove_schedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=TASK).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("executions", "0002_execution_deployment"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_schedule, remove_schedule)]
