"""Schedule the periodic reconcile: a django-celery-beat PeriodicTask running `deployments.reconcile_all`."""
from django.conf import settings
from django.db import migrations

from controlplane.core.schedules import periodic_task_operation


class Migration(migrations.Migration):
    dependencies = [
        ("deployments", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        periodic_task_operation(
            task="deployments.reconcile_all",
            every_s=int(getattr(settings, "DEPLOY_RECONCILE_INTERVAL_S", 60)),
            description="Reconcile every active, unpinned deployment with auto_reconcile on.",
        )
    ]
