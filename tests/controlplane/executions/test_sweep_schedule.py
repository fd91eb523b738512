"""Beat runs the engine sweep: the PeriodicTask comes from a data migration, idempotently."""
from __future__ import annotations

import importlib

import pytest
from django.apps import apps as django_apps

pytestmark = pytest.mark.django_db

migration = importlib.import_module("controlplane.executions.migrations.0003_sweep_schedule")


def test_the_sweep_is_scheduled_every_ten_seconds_by_the_migration():
    from django_celery_beat.models import PeriodicTask

    task = PeriodicTask.objects.get(name="flowplane.sweep")

    assert (task.task, task.enabled) == ("flowplane.sweep", True)
    assert (task.interval.every, task.interval.period) == (10, "seconds")
    assert task.expire_seconds == 10  # a sweep nobody picked up is superseded by the next one


def test_running_the_migration_again_keeps_one_task_and_an_operators_tuning():
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    tuned = IntervalSchedule.objects.create(every=30, period="seconds")
    PeriodicTask.objects.filter(name="flowplane.sweep").update(interval=tuned)

    (operation,) = migration.Migration.operations
    operation.code(django_apps, None)  # the migration's forward step, run a second time

    task = PeriodicTask.objects.get(name="flowplane.sweep")
    assert task.interval.every == 30


def test_the_scheduled_name_is_the_registered_sweep_task():
    from workers.celery import app
    from workers.tasks import sweep

    assert sweep.name == "flowplane.sweep" and "flowplane.sweep" in app.tasks
