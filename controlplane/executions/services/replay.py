"""Replaying an execution: a NEW run (trigger=replay) linked to the original.

Modes (`ReplayMode`):

- `exact`: the original's input, every step runs again;
- `modified`: another `input` and/or `mock` (`{node_id: output}`): a mocked node is recorded
  with that output instead of running;
- `from_step`: every step not downstream of `from_step` reuses its recorded output (Conductor's
  rerun-from-task, Temporal's reset); `from_step` and what follows it run again (`mock` allowed).

The version is a choice, stated in the request and recorded on both runs (Airflow #67657 is the
trap of an implicit one): `pinned` replays the original's own pinned graph (its version and
artifacts as they were), `active` what the deployment runs now (a fix deployed since). Either way
the deployment must still accept runs. Links: `replay_of` on the new run, an
`execution.replay_of` event on it and an `execution.replayed` event on the original, both naming
who. Everything is written in one transaction with the start; the canvas is published after it
commits, so the claims of the new run find reused and mocked steps already recorded.
"""
from __future__ import annotations

import logging
from typing import Any

from django.db import transaction

from controlplane.core.errors import ApplicationError, Conflict
from controlplane.deployments.models import Deployment
from controlplane.deployments.selectors import deployment_execution_graph
from controlplane.executions.models import EventType, Execution, ReplayMode, Trigger
from controlplane.executions.services.events import event_append, locked_execution
from controlplane.executions.services.replay_canvas import canvas_for_graph, downstream_of, with_configs
from controlplane.executions.services.replay_record import record_mocked, record_reused, reusable_nodes
from controlplane.executions.services.start import execution_start
from controlplane.tenancy.access import require_role
from controlplane.tenancy.models import Role

logger = logging.getLogger(__name__)

PINNED, ACTIVE = "pinned", "active"
VERSIONS = (PINNED, ACTIVE)


def execution_replay(
    *,
    execution: Execution,
    user,
    mode: str = ReplayMode.EXACT,
    version: str = ACTIVE,
    input: dict[str, Any] | None = None,
    from_step: str | None = None,
    mock: dict[str, Any] | None = None,
) -> Execution:
    """Start a replay of `execution` (see the module docstring); the new execution.

    Without arguments: an exact replay on what the deployment runs now (the API's default). A
    `from_step` or `mock` node missing from the chosen version is a 400 naming it (`from_step`,
    `mock.<node>`); a deployment that no longer accepts runs is a 409 from `execution_start`.
    """
    require_role(user, execution.company_id, Role.EDITOR, what="execution")
    _check_request(mode, version, input, from_step, mock)
    with transaction.atomic():
        replay = replay_start(execution, user=user, mode=mode, version=version, input=input, from_step=from_step,
                              mock=mock or {})
    logger.info("execution.replayed", extra={"execution_id": str(replay.pk), "original_execution_id": str(execution.pk),
                                             "mode": mode, "version": version})
    return replay


def _check_request(mode, version, input, from_step, mock) -> None:
    if mode not in ReplayMode.values:
        raise ApplicationError(f"mode must be one of {', '.join(ReplayMode.values)}", path="mode")
    if version not in VERSIONS:
        raise ApplicationError("version must be pinned (the original's version) or active (the deployment's "
                               "current one)", path="version")
    if input is not None and not isinstance(input, dict):
        raise ApplicationError("input must be a JSON object", path="input")
    if mock is not None and not isinstance(mock, dict):
        raise ApplicationError("mock must be an object {node_id: output}", path="mock")
    if mode == ReplayMode.EXACT and (input is not None or mock or from_step):
        raise ApplicationError("an exact replay reruns the original input; use mode modified for another input "
                               "or mocks, from_step to reuse outputs", path="mode")
    if mode == ReplayMode.MODIFIED and input is None and not mock:
        raise ApplicationError("a modified replay needs an `input` or a `mock`", path="input")
    if mode == ReplayMode.FROM_STEP and not from_step:
        raise ApplicationError("a from_step replay needs `from_step`: the node to run again from", path="from_step")
    if mode != ReplayMode.FROM_STEP and from_step:
        raise ApplicationError("from_step is only for mode from_step", path="from_step")


def replay_start(
    original: Execution, *, user, mode: str, version: str, input: dict | None = None, from_step: str | None = None,
    mock: dict[str, Any] | None = None, configs: dict[str, Any] | None = None, reason: dict | None = None,
) -> Execution:
    """Start the replay inside the caller's transaction; `configs` ({node: config}) replaces those
    jobs' configs in the new run (a dead letter replayed with a modified input); `reason` is added
    to the new run's `execution.replay_of` event."""
    if original.deployment_id is None:
        raise Conflict(f"execution {original.pk} ran before deployments existed; deploy the workflow and start a "
                       "new execution", code="not_deployed", path="deployment")
    pin = _pin(original, version, configs or {})
    replay, _ = execution_start(deployment=original.deployment_id, input=original.input if input is None else input,
                                user=user, trigger=Trigger.REPLAY, pin=pin)
    jobs = {job["id"]: job for job in replay.graph["jobs"]}
    where = "the original's version" if version == PINNED else "the deployment's active version"
    if from_step is not None and from_step not in jobs:
        raise ApplicationError(f"node {from_step!r} does not exist in {where} (v{replay.version.number}); choose one "
                               f"of: {', '.join(jobs)}", code="unknown_node", path="from_step")
    for node_id in mock or {}:
        if node_id not in jobs:
            raise ApplicationError(f"node {node_id!r} does not exist in {where} (v{replay.version.number}); mock one "
                                   f"of: {', '.join(jobs)}", code="unknown_node", path=f"mock.{node_id}")
    Execution.objects.filter(pk=replay.pk).update(replay_of=original, replay_mode=mode)
    replay.replay_of, replay.replay_mode = original, mode
    _prerecord(replay, original, from_step, mock or {}, user=user, version=version, reason=reason or {})
    return replay


def _pin(original: Execution, version: str, configs: dict[str, Any]):
    """What `execution_start` pins instead of the deployment's current artifacts, or None."""
    slug = original.company.slug
    if version == PINNED:
        return original.version, canvas_for_graph(with_configs(original.graph, configs), slug)
    if not configs:
        return None
    deployment = Deployment.objects.select_related("version").get(pk=original.deployment_id)
    return deployment.version, canvas_for_graph(with_configs(deployment_execution_graph(deployment), configs), slug)


def _prerecord(replay: Execution, original: Execution, from_step, mock, *, user, version, reason) -> None:
    reused: dict = {}
    if from_step is not None:
        candidates = {job["id"] for job in replay.graph["jobs"]} - downstream_of(replay.graph, from_step) - set(mock)
        reused = reusable_nodes(replay, original, candidates)
    locked = locked_execution(replay.pk)
    jobs = {job["id"]: job for job in replay.graph["jobs"]}
    for node_id, runs in reused.items():
        record_reused(locked, jobs[node_id], runs)
    for node_id, output in mock.items():
        record_mocked(locked, jobs[node_id], output)
    by = getattr(user, "username", None)
    event_append(execution=locked, type=EventType.EXECUTION_REPLAY_OF, data={
        "original": str(original.pk), "mode": replay.replay_mode, "version": version,
        "version_number": replay.version.number, "from_step": from_step, "reused": sorted(reused),
        "mocked": sorted(mock), "by": by, **reason,
    })
    source = locked_execution(original.pk)
    event_append(execution=source, type=EventType.EXECUTION_REPLAYED, data={
        "replay": str(replay.pk), "mode": replay.replay_mode, "version": version, "from_step": from_step, "by": by,
        **reason,
    })
