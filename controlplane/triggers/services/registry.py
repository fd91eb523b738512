"""Registering a deployment's triggers: apply makes them those of its version, pause disables them,
resume enables them again, undeploy removes them. Called inside the lifecycle services' transactions.

Schedules become django-celery-beat `PeriodicTask`s (`flowplane.schedule_fire`, kwargs
`{"schedule_id": ...}`) on a `CrontabSchedule` carrying the schedule's timezone, or an
`IntervalSchedule` for `every_s`, whose `start_time` is the anchor of its ticks (the first
epoch-aligned tick after it was registered; `workers/beat.py` fires on that grid). Beat's DatabaseScheduler notices the change through
`PeriodicTasks.changed`, which the model's save and delete signal.
"""
from __future__ import annotations

import json
import logging

from django.db import transaction
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from controlplane.deployments.models import Deployment, DeploymentStatus
from controlplane.triggers.models import ChainTrigger, Schedule
from controlplane.workflows.models import Workflow
from pipelines.cron import parse_cron
from pipelines.triggers import ScheduleSpec, chain_specs, first_interval_tick, schedule_specs, trigger_issues

logger = logging.getLogger(__name__)

FIRE_TASK = "flowplane.schedule_fire"


def schedule_spec_of(schedule: Schedule) -> ScheduleSpec:
    return ScheduleSpec(name=schedule.name, cron=schedule.cron or None, every_s=schedule.every_s,
                        timezone=schedule.timezone, overlap=schedule.overlap,
                        catchup_window_s=schedule.catchup_window_s, input=schedule.input)


def deployed_schedules(deployment: Deployment | None) -> dict[str, ScheduleSpec]:
    """{name: spec} of what the deployment has registered (the plan diffs against it)."""
    if deployment is None:
        return {}
    return {s.name: schedule_spec_of(s) for s in Schedule.objects.filter(deployment=deployment)}


@transaction.atomic
def triggers_sync(*, deployment: Deployment) -> dict[str, list[str]]:
    """Make the deployment's schedules and chain triggers exactly those its version declares.

    A schedule that is gone from the graph (or every one, for an explicit `schedules: []`) is
    deleted with its beat entry; other deployments of the same workflow and environment lose theirs.
    """
    graph = deployment.version.graph
    if trigger_issues(graph):  # a plan with these issues cannot be applied; never register half
        raise ValueError(f"version {deployment.version_id} declares invalid triggers")
    stale = Schedule.objects.filter(deployment__workflow_id=deployment.workflow_id,
                                    deployment__environment=deployment.environment).exclude(deployment=deployment)
    _delete(stale)
    ChainTrigger.objects.filter(deployment__workflow_id=deployment.workflow_id,
                                deployment__environment=deployment.environment).exclude(deployment=deployment).delete()
    specs = {s.name: s for s in schedule_specs(graph)}
    existing = {s.name: s for s in Schedule.objects.filter(deployment=deployment).select_related("periodic_task")}
    _delete(Schedule.objects.filter(pk__in=[s.pk for n, s in existing.items() if n not in specs]))
    enabled = deployment.status == DeploymentStatus.ACTIVE
    changed = []
    for name, spec in specs.items():
        row = existing.get(name)
        if row is not None and schedule_spec_of(row) == spec and row.periodic_task is not None:
            continue
        row = row or Schedule(deployment=deployment, name=name)
        row.cron, row.every_s, row.timezone = spec.cron or "", spec.every_s, spec.timezone
        row.overlap, row.catchup_window_s, row.input = spec.overlap, spec.catchup_window_s, dict(spec.input or {})
        row.save()
        _register(row, enabled)
        changed.append(name)
    triggers_set_enabled(deployment=deployment, enabled=enabled)  # unchanged ones too: apply resumes a paused one
    _sync_chains(deployment, graph)
    logger.info("triggers.synced", extra={"deployment_id": deployment.pk, "schedules": sorted(specs),
                                          "changed": changed})
    return {"schedules": sorted(specs), "changed": changed, "removed": sorted(set(existing) - set(specs))}


def _sync_chains(deployment: Deployment, graph: dict) -> None:
    wanted = set()
    for spec in chain_specs(graph):
        upstream = Workflow.objects.filter(project_id=deployment.workflow.project_id, slug=spec.workflow).first()
        if upstream is not None:
            wanted.add((upstream.pk, spec.status))
    have = {(c.upstream_id, c.status): c for c in ChainTrigger.objects.filter(deployment=deployment)}
    ChainTrigger.objects.filter(pk__in=[c.pk for key, c in have.items() if key not in wanted]).delete()
    for upstream_id, status in sorted(wanted - set(have)):
        ChainTrigger.objects.create(deployment=deployment, upstream_id=upstream_id, status=status)


def _register(schedule: Schedule, enabled: bool) -> None:
    if schedule.cron:
        crontab, _ = CrontabSchedule.objects.get_or_create(
            timezone=schedule.timezone, **parse_cron(schedule.cron).crontab_fields())
        when = {"crontab": crontab, "interval": None}
    else:
        interval, _ = IntervalSchedule.objects.get_or_create(every=schedule.every_s, period=IntervalSchedule.SECONDS)
        when = {"interval": interval, "crontab": None}
    task = schedule.periodic_task or PeriodicTask(name=schedule.task_name)
    # An interval's grid is anchored once and kept across re-applies, so its ticks stay where they were.
    if schedule.cron:
        task.start_time = None
    elif task.start_time is None or task.interval_id is None:
        task.start_time = first_interval_tick(schedule.every_s, timezone.now())
    task.task = FIRE_TASK
    task.kwargs = json.dumps({"schedule_id": schedule.pk})
    task.enabled = enabled
    task.description = f"schedule {schedule.name!r} of deployment {schedule.deployment_id} (controlplane.triggers)"
    for key, value in when.items():
        setattr(task, key, value)
    task.save()
    if schedule.periodic_task_id != task.pk:
        schedule.periodic_task = task
        schedule.save(update_fields=["periodic_task", "updated_at"])


def _delete(schedules) -> None:
    task_ids = [pk for pk in schedules.values_list("periodic_task_id", flat=True) if pk]
    schedules.delete()
    for task in PeriodicTask.objects.filter(pk__in=task_ids):
        task.delete()  # one by one: the model's delete signals beat that its schedule changed


@transaction.atomic
def triggers_set_enabled(*, deployment: Deployment, enabled: bool) -> int:
    """Pause (False) or resume (True) the deployment's schedules; returns how many."""
    tasks = PeriodicTask.objects.filter(pk__in=Schedule.objects.filter(deployment=deployment)
                                        .values_list("periodic_task_id", flat=True))
    count = 0
    for task in tasks:
        if task.enabled != enabled:
            task.enabled = enabled
            task.save(update_fields=["enabled"])
        count += 1
    return count


@transaction.atomic
def triggers_remove(*, deployment: Deployment) -> None:
    """Undeploy: the deployment's schedules, beat entries and chain triggers are deleted (hooks stay, refusing)."""
    _delete(Schedule.objects.filter(deployment=deployment))
    ChainTrigger.objects.filter(deployment=deployment).delete()
