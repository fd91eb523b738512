"""Schedule the engine sweep: a django-celery-beat PeriodicTask running `flowplane.sweep`.

The sweep marks workers whose heartbeat went stale offline (their running steps are recovered by the
fleet hook) and expires attempts stuck past their hard time limit, so beat recovers lost steps with
no operator. Idempotent: an existing task of that name is left as an operator may have tuned it.
"""
from django.conf import settings
from django.db import migrations

from controlplane.core.schedules import periodic_task_operation

# About two heartbeats (5 s each by default): a dead worker is noticed soon after it goes stale.
EVERY_S = int(getattr(settings, "ENGINE_SWEEP_INTERVAL_S", 10))


class Migration(migrations.Migration):
    dependencies = [
        ("executions", "0002_execution_deployment"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        periodic_task_operation(
            task="flowplane.sweep",
            every_s=EVERY_S,
            # A sweep nobody picked up within one interval is superseded by the next one.
            expire_seconds=EVERY_S,
            description="Mark stale workers offline and recover their running steps; expire attempts past "
            "their hard time limit.",
        )
    ]
