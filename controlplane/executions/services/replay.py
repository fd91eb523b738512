"""Replaying: a new execution of the same deployment with a run's original input.

Both an execution and a dead letter can be replayed; the new run (trigger=replay) is pinned to
what the deployment runs now, so a fix deployed since is what gets replayed.
"""
from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from controlplane.core.errors import Conflict
from controlplane.executions.models import DeadLetter, Execution, Trigger
from controlplane.executions.services.start import execution_start
from controlplane.tenancy.access import require_role
from controlplane.tenancy.models import Role

logger = logging.getLogger(__name__)


@transaction.atomic
def dead_letter_replay(*, dead_letter: DeadLetter, user) -> Execution:
    """Start a NEW execution (trigger=replay) of the dead letter's deployment with its run's input.

    The new run is pinned to what the deployment runs now (a fix deployed since the failure is
    what gets replayed). A deployment that no longer accepts executions is a 409 from
    `execution_start`; a letter replayed before is a 409 `already_replayed` naming that run.
    """
    require_role(user, dead_letter.execution.company_id, Role.EDITOR, what="dead letter")
    letter = DeadLetter.objects.select_for_update().select_related("execution").get(pk=dead_letter.pk)
    if letter.replayed_at is not None:
        raise Conflict(
            f"dead letter {letter.pk} was already replayed as execution {letter.replay_execution_id}; "
            "replay that run's own dead letter if it failed too",
            code="already_replayed",
            extra={"execution": str(letter.replay_execution_id) if letter.replay_execution_id else None},
        )
    original = letter.execution
    execution = _start_again(original, user=user)
    letter.replayed_at = timezone.now()
    letter.replay_execution = execution
    letter.save(update_fields=["replayed_at", "replay_execution"])
    logger.info("dead_letter.replayed", extra={"dead_letter_id": letter.pk, "execution_id": str(execution.pk),
                                               "original_execution_id": str(original.pk)})
    return execution


def execution_replay(*, execution: Execution, user) -> Execution:
    """Start a NEW execution (trigger=replay) of `execution`'s deployment with its input.

    Any run may be replayed, finished or not; a deployment that no longer accepts executions is
    a 409 from `execution_start`.
    """
    require_role(user, execution.company_id, Role.EDITOR, what="execution")
    replay = _start_again(execution, user=user)
    logger.info("execution.replayed", extra={"execution_id": str(replay.pk), "original_execution_id": str(execution.pk)})
    return replay


def _start_again(original: Execution, *, user) -> Execution:
    if original.deployment_id is None:
        raise Conflict(f"execution {original.pk} ran before deployments existed; deploy the workflow and start a "
                       "new execution", code="not_deployed", path="deployment")
    execution, _ = execution_start(deployment=original.deployment_id, input=original.input, user=user,
                                   trigger=Trigger.REPLAY)
    return execution
