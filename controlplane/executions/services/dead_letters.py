"""Dead letters: replay (in place or as a new run), discard, bulk replay; each an event with who.

Replaying a letter reruns its failed step with the recorded input (or a modified one):

- **in place** when the run can still continue: it ended `failed` with nothing compensated (its
  completed steps' effects still stand) and its deployment still runs the run's version. The run
  goes back to running (`execution.continued`), `flowplane.dead_letter_rerun` runs the step once
  on its group's queue with that input (`dead_letter_rerun_execute`), and on success the run's
  canvas is published again: every recorded shard is skipped by its claim, the rest runs, and the
  run finishes as usual. If the step fails again, the run fails again and the letter is open again.
- otherwise (compensated, still compensating, cancelled, or another version deployed since: the
  fix is what gets replayed) as a **from_step replay**: a new run from the failed node on the
  chosen version (default `active`), reusing the outputs of everything upstream; a modified input
  becomes that node's config in the new run.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from controlplane.core.errors import ApplicationError, Conflict
from controlplane.deployments.models import Deployment
from controlplane.deployments.selectors import deployment_check_accepts
from controlplane.executions.models import (
    DeadLetter,
    EventType,
    Execution,
    ExecutionStatus,
    ReplayMode,
    StepRun,
    StepStatus,
)
from controlplane.executions.services.attempts import (
    Delivery,
    Outcome,
    hard_time_limit,
    mark_lost,
    new_attempt,
    run_attempt,
    started_data,
)
from controlplane.executions.services.events import (
    event_append,
    events_append_with_run,
    locked_execution,
)
from controlplane.executions.services.map_items import map_expansion, map_item_rerun
from controlplane.executions.services.replay import ACTIVE, VERSIONS, replay_start
from controlplane.executions.services.watchdog import redrive_after_commit
from controlplane.executions.store import store_write
from controlplane.tenancy.access import require_role
from controlplane.tenancy.models import Role
from pipelines.engine.fanout import is_map

logger = logging.getLogger(__name__)

BULK_REPLAY_MAX = 100
RERUN_TASK = "flowplane.dead_letter_rerun"


@dataclass(frozen=True)
class DeadLetterReplay:
    """The run that carries on: the letter's own (`continued`) or a new from_step replay."""

    execution: Execution
    continued: bool


def dead_letter_replay(*, dead_letter: DeadLetter, user, input: Any = None, version: str = ACTIVE) -> DeadLetterReplay:
    """Replay a letter (see the module docstring). A letter replayed before is a 409
    `already_replayed` naming the run that carries on; a discarded one a 409 `discarded`."""
    require_role(user, dead_letter.execution.company_id, Role.EDITOR, what="dead letter")
    if version not in VERSIONS:
        raise ApplicationError("version must be pinned or active", path="version")
    with transaction.atomic():
        letter = DeadLetter.objects.select_for_update().get(pk=dead_letter.pk)
        _check_open(letter)
        if (letter.payload.get("job") or {}).get("type") == "approval":
            # People decide an approval; no task can rerun it. A replay of the run asks them again.
            raise Conflict(f"dead letter {letter.pk} is a rejected or expired approval ({letter.node_id!r}); "
                           f"replay the run instead (POST executions/{letter.execution_id}/replay) to ask again",
                           code="approval_not_replayable")
        if is_map((letter.payload.get("job") or {}).get("type")) and map_expansion(letter.execution_id,
                                                                                 letter.node_id) is None:
            # The map's gate failed, not an item: what failed is its list, rendered from upstream
            # outputs; there is no item to rerun. A replay from the map renders it again.
            raise Conflict(f"dead letter {letter.pk} is map {letter.node_id!r} failing on its items "
                           f"({letter.error.get('message', '')}); fix the list or max_items and replay the run "
                           f"from the map (POST executions/{letter.execution_id}/replay with mode from_step, "
                           f"from_step {letter.node_id!r})", code="map_items_not_replayable")
        original = locked_execution(letter.execution_id)
        by = getattr(user, "username", None)
        if _can_continue(original):
            carried = _continue_in_place(original, letter, input=input, by=by)
        else:
            configs = {letter.node_id: input} if input is not None else None
            carried = replay_start(original, user=user, mode=ReplayMode.FROM_STEP, version=version,
                                   from_step=letter.node_id, configs=configs, reason={"dead_letter": letter.pk})
        letter.replayed_at, letter.replay_execution, letter.resolved_by = timezone.now(), carried, _user(user)
        letter.save(update_fields=["replayed_at", "replay_execution", "resolved_by"])
        continued = carried.pk == original.pk
        locked = original if continued else locked_execution(original.pk)
        event_append(execution=locked, type=EventType.DEAD_LETTER_REPLAYED, data={
            "dead_letter": letter.pk, "node_id": letter.node_id, "shard": letter.shard, "by": by,
            "outcome": "continued" if continued else "from_step", "execution": str(carried.pk),
            "input_modified": input is not None,
        })
    logger.info("dead_letter.replayed", extra={"dead_letter_id": letter.pk, "execution_id": str(carried.pk),
                                               "original_execution_id": str(original.pk), "continued": continued})
    return DeadLetterReplay(carried, continued)


def _check_open(letter: DeadLetter) -> None:
    if letter.discarded_at is not None:
        raise Conflict(f"dead letter {letter.pk} was discarded ({letter.discard_reason}); nothing to replay",
                       code="discarded")
    if letter.replayed_at is not None:
        raise Conflict(
            f"dead letter {letter.pk} was already replayed as execution {letter.replay_execution_id}; "
            "replay that run's own dead letter if it failed too",
            code="already_replayed",
            extra={"execution": str(letter.replay_execution_id) if letter.replay_execution_id else None},
        )


def _user(user):
    return user if getattr(user, "is_authenticated", False) else None


def _can_continue(execution: Execution) -> bool:
    """Failed with nothing undone, and its deployment still runs the run's version."""
    if execution.status != ExecutionStatus.FAILED or execution.deployment_id is None:
        return False
    if StepRun.objects.filter(execution=execution, is_compensation=True).exists():
        return False
    version_id = Deployment.objects.filter(pk=execution.deployment_id).values_list("version_id", flat=True).first()
    return version_id == execution.version_id


def _continue_in_place(execution: Execution, letter: DeadLetter, *, input: Any, by) -> Execution:
    deployment_check_accepts(Deployment.objects.get(pk=execution.deployment_id))
    if input is not None:
        letter.payload = {**letter.payload, "replay_input": input}
        letter.save(update_fields=["payload"])
    execution.status, execution.error, execution.finished_at = ExecutionStatus.RUNNING, None, None
    event_append(execution=execution, type=EventType.EXECUTION_CONTINUED, data={
        "dead_letter": letter.pk, "node_id": letter.node_id, "shard": letter.shard, "by": by,
    }, update_fields=["status", "error", "finished_at"])
    letter_id, queue = letter.pk, letter.payload.get("queue")
    timeout = (letter.payload.get("job") or {}).get("timeout_s")
    execution_id = execution.pk
    transaction.on_commit(lambda: _dispatch_rerun(execution_id, letter_id, queue, timeout))
    return execution


def _dispatch_rerun(execution_id, letter_id: int, queue: str, timeout_s) -> None:
    from controlplane.core.celery_app import app
    from controlplane.executions.dispatch import publish  # dispatch imports the services: at call time

    limits = {"soft_time_limit": float(timeout_s), "time_limit": hard_time_limit(timeout_s)} if timeout_s else {}
    publish(execution_id, app.signature(RERUN_TASK, args=(letter_id,), immutable=True, queue=queue, **limits))


def dead_letter_rerun_execute(*, dead_letter_id: int, delivery: Delivery) -> Outcome:
    """Run a letter's step once more with its recorded (or modified) input, in its run, then let
    the run's canvas carry on. Claim before work, like a step: a duplicate delivery is ignored."""
    with transaction.atomic():
        letter = DeadLetter.objects.get(pk=dead_letter_id)
        execution = locked_execution(letter.execution_id)
        if execution.status != ExecutionStatus.RUNNING:
            return Outcome("ignore", execution.status, detail=f"execution is {execution.status}")
        job = execution.job(letter.node_id)
        mine = list(StepRun.objects.filter(execution=execution, node_id=letter.node_id, shard=letter.shard,
                                           is_compensation=False))
        if any(run.status == StepStatus.SUCCEEDED for run in mine):
            redrive_after_commit(execution)
            return Outcome("done", StepStatus.SUCCEEDED, detail="already rerun; the run carries on")
        for current in (run for run in mine if run.status == StepStatus.RUNNING):
            if current.task_id != delivery.task_id:
                return Outcome("ignore", "running", detail=f"attempt {current.attempt} is running")
            mark_lost(execution, current, reason="the try that reran it ended without recording a result")
        run = new_attempt(execution, job, letter.shard, letter.payload.get("shard_count", job["replicas"]), mine,
                          delivery, deferred=False)
        events_append_with_run(execution=execution, run=run, completed=False, events=[
            (EventType.STEP_STARTED, {**started_data(run), "dead_letter": letter.pk})])
        payload = letter.payload
        config = payload["replay_input"] if "replay_input" in payload else payload.get("input")
        spec = {**job, "config": job.get("config") if config is None else config}
        if "replay_input" in payload:  # modified by an operator: no longer the deployed artifact
            spec.pop("artifact", None)
        context = payload.get("context") or {}
        if is_map(job.get("type")) and not spec.get("artifact"):  # a map item: its child step, on its item
            spec, context = map_item_rerun(execution.pk, letter.shard, job, config, context)
    rendered, output, error = run_attempt(execution.company_id, run, spec, context)
    with transaction.atomic():
        execution = locked_execution(letter.execution_id)
        run = StepRun.objects.get(pk=run.pk)
        if run.status != StepStatus.RUNNING:
            return Outcome("ignore", run.status, detail=f"attempt was marked {run.status} while it ran")
        run.input, run.finished_at = rendered, timezone.now()
        base = {"node_id": run.node_id, "shard": run.shard, "attempt": run.attempt, "dead_letter": letter.pk}
        if error is None:
            run.status, run.output = StepStatus.SUCCEEDED, output
            store_write(execution=execution, update=[(run, ["input", "finished_at", "status", "output"])],
                        events=[(EventType.STEP_COMPLETED, {**base, "output": output})], completes=run)
            redrive_after_commit(execution)
            return Outcome("done", StepStatus.SUCCEEDED, detail="rerun succeeded; the run carries on")
        return _failed_again(execution, letter, run, error, base)


def _failed_again(execution: Execution, letter: DeadLetter, run: StepRun, error: dict, base: dict) -> Outcome:
    from controlplane.executions.services.steps import fail_execution  # steps imports much: at call time

    run.status, run.error = StepStatus.FAILED, error
    store_write(execution=execution, update=[(run, ["input", "finished_at", "status", "error"])],
                events=[(EventType.STEP_FAILED, {**base, "error": error})])
    DeadLetter.objects.filter(pk=letter.pk).update(step_run=run, attempts=letter.attempts + 1, error=error,
                                                   replayed_at=None)
    event_append(execution=execution, type=EventType.STEP_DEAD_LETTERED, data=base)
    fail_execution(execution, error={**base, "error": error}, saga_queue=run.queue)
    return Outcome("fail", StepStatus.FAILED, detail=error.get("message", "failed"))


@transaction.atomic
def dead_letter_discard(*, dead_letter: DeadLetter, user, reason: str) -> DeadLetter:
    """Close a letter without replaying it; `reason` is required and kept with who discarded it."""
    require_role(user, dead_letter.execution.company_id, Role.EDITOR, what="dead letter")
    if not isinstance(reason, str) or not reason.strip():
        raise ApplicationError("say why the dead letter is discarded: a non-empty `reason`", path="reason")
    letter = DeadLetter.objects.select_for_update().get(pk=dead_letter.pk)
    _check_open(letter)
    letter.discarded_at, letter.discard_reason, letter.resolved_by = timezone.now(), reason.strip()[:2000], _user(user)
    letter.save(update_fields=["discarded_at", "discard_reason", "resolved_by"])
    event_append(execution=locked_execution(letter.execution_id), type=EventType.DEAD_LETTER_DISCARDED, data={
        "dead_letter": letter.pk, "node_id": letter.node_id, "shard": letter.shard,
        "by": getattr(user, "username", None), "reason": letter.discard_reason,
    })
    return letter


def dead_letters_replay_bulk(*, letters, user, version: str = ACTIVE, limit: int = BULK_REPLAY_MAX) -> list[dict]:
    """Replay each open letter of `letters` (a selector's queryset), oldest first, each in its own
    transaction; a refusal of one is reported with it and does not stop the others."""
    results = []
    for letter in list(letters.filter(replayed_at__isnull=True, discarded_at__isnull=True)
                       .order_by("created_at", "id")[:limit]):
        try:
            outcome = dead_letter_replay(dead_letter=letter, user=user, version=version)
        except ApplicationError as exc:
            results.append({"dead_letter": letter.pk, "error": exc.code, "detail": exc.detail})
            continue
        results.append({"dead_letter": letter.pk, "execution": str(outcome.execution.pk),
                        "outcome": "continued" if outcome.continued else "from_step"})
    return results
