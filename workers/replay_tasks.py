"""Task shims of replays: a dead letter's step run again in its own run (`services.dead_letters`)."""
from __future__ import annotations

from celery import shared_task

from controlplane.executions import services
from workers.tasks import TASK_OPTIONS, StepFailedFinally, _run


@shared_task(name="flowplane.dead_letter_rerun", throws=(StepFailedFinally,), **TASK_OPTIONS)
def dead_letter_rerun(self, dead_letter_id: int) -> dict:
    """Rerun a dead letter's step once with its recorded (or modified) input, on the step's queue,
    then publish the run's canvas again; no retries beyond the database's (a failure reopens it)."""
    return _run(self, services.dead_letter_rerun_execute, dead_letter_id=dead_letter_id)
