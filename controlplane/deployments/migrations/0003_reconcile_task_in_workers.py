"""The periodic reconcile's task lives in `workers.tasks` as `flowplane.reconcile_all` (it was
`deployments.reconcile_all`, a task shim inside the control plane): existing schedules follow it,
keeping whatever interval or enabled state an operator gave them."""
from django.db import migrations

OLD, NEW = "deployments.reconcile_all", "flowplane.reconcile_all"


def rename(apps, schema_editor, old=OLD, new=NEW):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for task in PeriodicTask.objects.filter(task=old):
        task.task = new
        if task.name == old and not PeriodicTask.objects.filter(name=new).exists():
            task.name = new
        task.save(update_fields=["task", "name"])


def rename_back(apps, schema_editor):
    rename(apps, schema_editor, old=NEW, new=OLD)


class Migration(migrations.Migration):
    dependencies = [
        ("deployments", "0002_reconcile_schedule"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(rename, rename_back)]
