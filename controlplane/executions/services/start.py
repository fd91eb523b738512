"""Starting executions (cancelling them: `cancel.py`).

`execution_start` validates everything a run needs before anything is written or dispatched: the
deployment (tenant-scoped, and accepting executions), the input, every job's worker group and a
live worker in it. The run is pinned to the deployment's version and its artifacts (graph snapshot
+ compiled canvas, built once per artifact revision: `start_canvas`), marked running with
`execution.started`, and its canvas is published only after the transaction commits.
"""
from __future__ import annotations

import logging
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from controlplane.core.errors import ApplicationError, Conflict, NotFound
from controlplane.deployments.models import Deployment
from controlplane.deployments.selectors import deployment_check_accepts
from controlplane.executions.models import EventType, Execution, ExecutionStatus, Trigger
from controlplane.executions.services.events import event_append, locked_execution, store_write
from controlplane.executions.services.start_canvas import StartCanvas, start_canvas
from controlplane.executions.services.start_reads import deployment_for_start
from controlplane.executions.services.state import remember_run
from controlplane.fleet.models import queue_name_for
from controlplane.tenancy.access import check_role
from controlplane.tenancy.models import Role
from controlplane.workflows.selectors import workflow_check_accepts_runs

logger = logging.getLogger(__name__)


class _System:
    """The caller of a run that a schedule, webhook or upstream run starts: no user, no role to check.
    Only services pass it (`execution_start(user=SYSTEM, ...)`); no request can produce it."""

    pk = None
    is_authenticated = False


SYSTEM = _System()


def execution_queues(execution: Execution) -> dict[str, str]:
    """{group slug: Celery queue} for every group a job or compensation of the run uses."""
    slug = execution.company.slug
    groups = set()
    for job in execution.graph["jobs"]:
        groups.add(job["group"])
        if job.get("compensate") and job["compensate"].get("group"):
            groups.add(job["compensate"]["group"])
    return {group: queue_name_for(slug, group) for group in groups}


def _check_placement(company, groups: dict[str, tuple[Any, bool]], placements: list[tuple[str, str | None]]):
    """Every group used must exist in the company and have a live worker: 400 / 409 otherwise.
    `groups` is {slug: (group, has a live worker)}; `placements` (path, group slug) per job."""
    for path, slug in placements:
        if not slug:
            raise ApplicationError(
                f"{path.rsplit('.', 1)[0]} has no worker group; set `group` to one of: {', '.join(sorted(groups)) or 'none'}",
                code="unknown_group",
                path=path,
            )
        if slug not in groups:
            raise ApplicationError(
                f"worker group {slug!r} does not exist in {company.slug}; create it or place the job on one of: "
                f"{', '.join(sorted(groups)) or 'none'}",
                code="unknown_group",
                path=path,
            )
    for path, slug in placements:
        group, live = groups[slug]
        if not live:
            raise Conflict(
                f"worker group {slug!r} has no live worker; start a worker on queue "
                f"{queue_name_for(company.slug, group.slug)}",
                code="no_live_worker",
                path=path,
            )


def execution_start(
    *,
    deployment: Deployment | int,
    input: Any,
    user,
    idempotency_key: str | None = None,
    trigger: str = Trigger.MANUAL,
    trigger_details: dict | None = None,
    pin: tuple[Any, StartCanvas] | None = None,
) -> tuple[Execution, bool]:
    """Start a run on `deployment` (an instance or id visible to `user`); returns (execution, created).

    The run is pinned to the deployment's version and to the execution graph of its artifacts as
    they are now; a later apply, rollback or pause does not change it. A deployment that does not
    accept executions is a 409 (`deployment_paused`, `deployment_undeployed`, `not_deployed`), and so
    is a paused or archived workflow (`workflow_paused`, `workflow_archived`). The
    same idempotency key in the same company returns the existing execution; reusing it for a
    different deployment or input is a 409 `idempotency_conflict`. Nothing is dispatched unless
    the transaction commits. `pin` (version, canvas): pin those instead of what the deployment
    runs now (a replay of an earlier run's version; `replay.py`).
    """
    if not isinstance(input, dict):
        raise ApplicationError("input must be a JSON object", code="invalid", path="input")
    if idempotency_key is not None and (not isinstance(idempotency_key, str) or not 0 < len(idempotency_key) <= 200):
        raise ApplicationError("idempotency_key must be a string of 1-200 characters", path="idempotency_key")
    deployment_id = deployment.pk if isinstance(deployment, Deployment) else deployment
    company = None
    try:
        with transaction.atomic():
            system = user is SYSTEM
            target = deployment_for_start(user, deployment_id, system=system)  # share-locks the deployment row
            if target is None:
                raise NotFound(f"deployment {deployment_id!r} not found", path="deployment")
            deployment, company = target.deployment, target.company
            if not system:
                check_role(target.caller_role, Role.EDITOR, what="deployment")
            if idempotency_key:
                existing = Execution.objects.filter(company=company, idempotency_key=idempotency_key).first()
                if existing is not None:
                    return _idempotent_repeat(existing, deployment, input), False
            workflow_check_accepts_runs(target.workflow_status, slug=target.workflow_slug)
            deployment_check_accepts(deployment)
            version, pinned = pin or (deployment.version, start_canvas(deployment, company.slug, target.artifact_stamp))
            graph, canvas = pinned.graph, pinned.canvas
            if not graph["jobs"]:
                raise Conflict(f"deployment {deployment.pk} holds no jobs; plan and apply a version with steps",
                               code="not_deployed", path="deployment")
            _check_placement(company, target.groups, pinned.placements)
            execution = Execution(
                company=company,
                deployment=deployment,
                environment=deployment.environment,
                version=version,
                trigger=trigger,
                trigger_details=trigger_details or {},
                input=input,
                idempotency_key=idempotency_key or None,
                graph=graph,
                canvas=canvas,
                status=ExecutionStatus.RUNNING,
                created_by=user if getattr(user, "is_authenticated", False) else None,
                started_at=timezone.now(),
            )
            store_write(execution=execution, create=True, events=[(
                EventType.EXECUTION_STARTED,
                {"deployment": deployment.pk, "environment": deployment.environment,
                 "version": version.pk, "version_number": version.number,
                 "trigger": trigger, "strategy": pinned.strategy, "tasks": pinned.task_count,
                 **({"trigger_details": trigger_details} if trigger_details else {})},
            )])
            remember_run(execution)  # this process dispatches it; often runs it too
            queues = pinned.queues
            if canvas.get("segments") and canvas["segments"][0]["plan"] is None:
                # A gate first: nothing to publish before it opens (an approval sets the run waiting).
                transaction.on_commit(lambda: _advance(execution.pk))
            else:
                transaction.on_commit(lambda: _dispatch(execution.pk, canvas, queues))
    except IntegrityError:
        # A concurrent request with the same key won the insert.
        existing = Execution.objects.filter(company=company, idempotency_key=idempotency_key).first()
        if company is None or existing is None:
            raise
        return _idempotent_repeat(existing, deployment, input), False
    return execution, True


def _idempotent_repeat(existing: Execution, deployment: Deployment, input: dict) -> Execution:
    if existing.deployment_id != deployment.pk or existing.input != input:
        raise Conflict(
            "idempotency_key was already used for a different deployment or input; use a new key",
            code="idempotency_conflict",
            path="idempotency_key",
            extra={"execution": str(existing.pk)},
        )
    return existing


def _dispatch(execution_id, canvas: dict[str, Any], queues: dict[str, str]) -> None:
    """Publish the run's canvas (after commit). A broker failure fails the run instead of hiding it."""
    from controlplane.executions.dispatch import build_signature, publish  # dispatch imports the services

    try:
        publish(execution_id, build_signature(str(execution_id), canvas, queues))
    except Exception as exc:
        _dispatch_failed(execution_id, exc)


def _dispatch_failed(execution_id, exc: Exception) -> None:
    logger.exception("execution.dispatch_failed", extra={"execution_id": str(execution_id)})
    with transaction.atomic():
        locked = locked_execution(execution_id)
        if locked.status in (ExecutionStatus.RUNNING, ExecutionStatus.WAITING):
            locked.status = ExecutionStatus.FAILED
            locked.error = {"message": f"dispatch failed: {exc}"}
            locked.finished_at = timezone.now()
            event_append(execution=locked, type=EventType.EXECUTION_FAILED, data={"error": locked.error},
                         update_fields=["status", "error", "finished_at"])


def _advance(execution_id) -> None:
    from controlplane.executions.services.segments import segment_advance  # segments imports start: at call time

    try:
        segment_advance(execution_id)
    except Exception as exc:  # like a failed dispatch: the run fails instead of hiding it
        _dispatch_failed(execution_id, exc)
