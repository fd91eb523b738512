"""Schedule the triggers sweep: a django-celery-beat PeriodicTask running `flowplane.triggers_sweep`.

It starts buffered schedule fires once their schedule's run has ended, and the runs chained to
finished runs (`ChainRun` makes each start once). Idempotent, like the engine sweep's migration.
"""
from django.conf import settings
from django.db import migrations

from controlplane.core.schedules import periodic_task_operation

EVERY_S = int(getattr(settings, "TRIGGERS_SWEEP_INTERVAL_S", 5))


class Migration(migrations.Migration):
    dependencies = [
        ("triggers", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        periodic_task_operation(
            task="flowplane.triggers_sweep",
            every_s=EVERY_S,
            expire_seconds=EVERY_S,
            description="Start buffered schedule fires that may run now, and the runs chained to finished runs.",
        )
    ]
