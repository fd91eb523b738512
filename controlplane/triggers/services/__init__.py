"""Writes of the triggers app.

    triggers_sync(*, deployment)                 apply: schedules and chain triggers of the version
    triggers_set_enabled(*, deployment, enabled) pause / resume
    triggers_remove(*, deployment)               undeploy
    schedule_fire(*, schedule_id, now=None)      beat's tick of one schedule
    triggers_sweep()                             buffered schedule fires and chained runs
    hook_create / hook_rotate / hook_retire_previous / hook_delete, hook_receive
"""
from controlplane.triggers.services.chains import chains_fire
from controlplane.triggers.services.hooks import (
    hook_create,
    hook_delete,
    hook_receive,
    hook_retire_previous,
    hook_rotate,
)
from controlplane.triggers.services.registry import (
    deployed_schedules,
    triggers_remove,
    triggers_set_enabled,
    triggers_sync,
)
from controlplane.triggers.services.schedules import schedule_fire, schedules_start_buffered


def triggers_sweep() -> dict:
    """For beat: start buffered schedule fires that may run now, and the runs chained to finished runs."""
    return {"buffered_started": schedules_start_buffered(), "chained": chains_fire()}


__all__ = [
    "chains_fire",
    "deployed_schedules",
    "hook_create",
    "hook_delete",
    "hook_receive",
    "hook_retire_previous",
    "hook_rotate",
    "schedule_fire",
    "schedules_start_buffered",
    "triggers_remove",
    "triggers_set_enabled",
    "triggers_sweep",
    "triggers_sync",
]
