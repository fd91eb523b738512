"""Schedule the periodic reconcile: a django-celery-beat PeriodicTask running `deployments.reconcile_all`."""
from django.conf import settings
from django.db import migrations

TASK = "deployments.reconcile_all"


def create_schedule(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every = int(getattr(settings, "DEPLOY_RECONCILE_INTERVAL_S", 60))
    schedule, _ = IntervalSchedule.objects.get_or_create(every=every, period="seconds")
    PeriodicTask.objects.get_or_create(
        name=TASK,
        defaults={
            "task": TASK,
            "interval": schedule,
            "enabled": True,
            "description": "Reconcile every active, unpinned deployment with auto_reconcile on.",
        },
    )


def remove_schedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=TASK).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("deployments", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_schedule, remove_schedule)]
