"""The watchdog: PostgreSQL is the truth, the broker only a way to deliver.

A run can stop making progress with nothing running: Redis restarted and lost the canvas's next
message (or a chord part's result, so its join never fires), a step was killed at its hard time
limit before its attempt was committed, a countdown retry vanished with a broker. Nothing is
claimed, so no lost-attempt sweep finds it. For such a run (running, no attempt running, no event
for `EXECUTION_STALL_AFTER_S`, longer when its last event is a retry waiting for its countdown)
the watchdog publishes the run's canvas again. Every task claims from the store first, so what is
recorded already is not run again (a completed step answers "already recorded"), what is due runs,
and the canvas's last task finishes the run. Each re-drive is an `execution.redriven` event; after
`EXECUTION_MAX_REDRIVES` re-drives in a row without any progress in between the run fails with a
reason instead of staying `running`.
"""
from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Subquery
from django.utils import timezone

from controlplane.executions.models import EventType, Execution, ExecutionEvent, ExecutionStatus, StepRun, StepStatus
from controlplane.executions.services.events import event_append, locked_execution
from controlplane.executions.services.segments import has_gates, segment_redrive
from controlplane.executions.services.start import execution_queues
from controlplane.executions.services.steps import fail_execution

logger = logging.getLogger(__name__)


def executions_redrive_stalled(*, now=None) -> dict[str, int]:
    """Re-drive (or, past the limit, fail) every stalled run; returns {"redriven": n, "failed": m}."""
    now = now or timezone.now()
    stall = timedelta(seconds=float(settings.EXECUTION_STALL_AFTER_S))
    last_event = ExecutionEvent.objects.filter(execution=OuterRef("pk")).order_by("-seq")
    candidates = (
        Execution.objects.filter(status=ExecutionStatus.RUNNING)
        .annotate(last_at=Subquery(last_event.values("created_at")[:1]),
                  running=Exists(StepRun.objects.filter(execution=OuterRef("pk"), status=StepStatus.RUNNING)))
        .filter(last_at__lt=now - stall, running=False)
        .values_list("pk", flat=True)
    )
    counts = {"redriven": 0, "failed": 0}
    for execution_id in list(candidates):
        outcome = _redrive(execution_id, now=now, stall=stall)
        if outcome:
            counts[outcome] += 1
    return counts


def _redrive(execution_id, *, now, stall: timedelta) -> str | None:
    with transaction.atomic():
        execution = locked_execution(execution_id)
        if execution.status != ExecutionStatus.RUNNING:
            return None
        if StepRun.objects.filter(execution_id=execution_id, status=StepStatus.RUNNING).exists():
            return None  # something claimed a step since the scan
        last = execution.events.order_by("-seq").only("type", "data", "created_at").first()
        if last is None or now - last.created_at < stall + _countdown(last):
            return None
        redrives = int(last.data.get("redrives", 0)) + 1 if last.type == EventType.EXECUTION_REDRIVEN else 1
        limit = int(settings.EXECUTION_MAX_REDRIVES)
        idle_s = round((now - last.created_at).total_seconds(), 1)
        if redrives > limit:
            error = {"message": f"the run made no progress after {limit} re-drives of its canvas "
                                f"({idle_s}s without an event); its workers may be gone or a step keeps "
                                "dying before it records anything",
                     "retryable": False, "details": {"reason": "stalled", "redrives": limit}}
            queues = execution_queues(execution)
            fail_execution(execution, error={"error": error}, saga_queue=queues[_first_group(execution)])
            logger.error("execution.stalled_failed", extra={"execution_id": str(execution_id), "redrives": limit})
            return "failed"
        event_append(execution=execution, type=EventType.EXECUTION_REDRIVEN,
                     data={"redrives": redrives, "idle_s": idle_s, "after": last.type})
        redrive_after_commit(execution)
    logger.warning("execution.redriven", extra={"execution_id": str(execution_id), "redrives": redrives})
    return "redriven"


def redrive_after_commit(execution: Execution) -> None:
    """Publish again, once the caller's transaction (holding the run's row lock) commits, what the
    locked `execution` is due: its current segment only for a gated run (a later one is not due,
    and a waiting run is never re-driven), else its whole canvas. Claims skip what is recorded."""
    if has_gates(execution):
        segment_redrive(execution)
        return
    execution_id, canvas, queues = execution.pk, execution.canvas, execution_queues(execution)
    transaction.on_commit(lambda: _publish(execution_id, canvas, queues))


def _publish(execution_id, canvas, queues) -> None:
    """Publish the canvas again. A broker that fails now is retried by the next sweep (the run has
    made no progress, so a re-drive is due at once)."""
    from controlplane.executions.dispatch import build_signature, publish  # dispatch imports the services

    try:
        publish(execution_id, build_signature(str(execution_id), canvas, queues))
    except Exception:
        logger.exception("execution.redrive_dispatch_failed", extra={"execution_id": str(execution_id)})


def _countdown(event: ExecutionEvent) -> timedelta:
    """A retry waiting for its countdown is not a stall until the countdown is over."""
    if event.type == EventType.STEP_RETRYING:
        return timedelta(seconds=float(event.data.get("countdown_s") or 0))
    return timedelta(0)


def _first_group(execution: Execution) -> str:
    return execution.graph["jobs"][0]["group"]
