"""Shared machinery of one attempt: outcomes, deliveries, running a step spec, classifying errors.

Services return an `Outcome`; the task shim turns it into Celery behaviour (return, retry,
Ignore, raise), so the services stay testable without a broker.
"""
from __future__ import annotations

import importlib
import os
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.utils import timezone

from controlplane.catalog.services import secret_resolve
from controlplane.core.errors import ApplicationError
from controlplane.core.logs import bind_attempt_context
from controlplane.deployments.artifacts import ARTIFACT_NOT_FOUND, ArtifactRefused, artifact_spec, runnable_job
from controlplane.deployments.models import artifact_key
from controlplane.egress.selectors import company_egress_policy
from controlplane.executions.mail import send_step_email
from controlplane.executions.models import EventType, Execution, StepRun, StepStatus
from controlplane.executions.services.map_items import map_item_run
from controlplane.executions.store import store_write
from pipelines.engine import idempotency_key
from pipelines.engine.fanout import is_map, item_reads_upstream
# Waits and time limits are the engine's (pure) rules; re-exported for the task shims and dispatch.
from pipelines.engine.limits import (  # noqa: F401
    HARD_LIMIT_GRACE_S,
    MAX_WAITS,
    WAIT_FIRST_S,
    WAIT_MAX_S,
    hard_time_limit,
    wait_countdown,
)
from pipelines.engine.limits import attempt_expired as expired
from pipelines.errors import (
    RESOURCE_EXHAUSTED,
    PipelineError,
    ResourceExhausted,
    StepConfigError,
    StepFailed,
    TemplateError,
)
from pipelines.masking import MaskDepthError, SecretMask, masking_scope
from pipelines.steps import StepContext, get_step_type, run_step
from pipelines.steps.registry import check_rendered_refs
from pipelines.templating import find_templates, render


@dataclass(frozen=True)
class Delivery:
    """Who received the task: Celery request facts the services record."""

    task_id: str = ""
    worker: str = ""
    queue: str = ""
    retries: int = 0
    request: dict = field(default_factory=dict)
    pid: int | None = None  # the process running the task (a pool child)


@dataclass(frozen=True)
class Outcome:
    """What the task should do next.

    action: ``done`` (return the status), ``wait`` (retry after ``countdown`` without a new
    attempt), ``retry`` (retry: a new attempt after ``countdown``), ``ignore`` (stop, record no
    result: a duplicate or a run that is no longer running), ``fail`` (the step failed for good).
    """

    action: str
    status: str = ""
    countdown: float = 0.0
    detail: str = ""

    def result(self) -> dict[str, Any]:
        return {"status": self.status or self.action, "detail": self.detail}


_callables_loaded = False


def load_callable_modules() -> None:
    """Import the allow-listed `python` callables (PIPELINES_CALLABLE_MODULES) once per process."""
    global _callables_loaded
    if not _callables_loaded:
        for module in settings.PIPELINES_CALLABLE_MODULES:
            importlib.import_module(module)
        _callables_loaded = True


def run_spec(
    spec: dict[str, Any], *, context: dict, company_id: int, execution_id: str, node_id: str, attempt: int,
    shard: int, shard_count: int, idempotency_key: str, timeout_s: float | None, group: str | None = None,
) -> tuple[Any, Any, dict | None]:
    """Render and run one step spec: (rendered input, output, error dict or None). Never raises.

    The rendered input keeps `{"$secret": name}` references (it is stored and shown); values are
    resolved from the company's secrets only for the step's own run. This is the one way out of
    a step run (steps, compensations; locked and unlocked paths), so it is where secrets are
    masked: every value resolved for the step is `***` in all three results, in each of its
    encodings (`pipelines.masking`), before anything can record, return or log them; while the
    step runs, log records emitted in its context are masked by the workers' logging filter.
    """
    load_callable_modules()
    bind_attempt_context(execution_id=execution_id, node=node_id, shard=shard, attempt=attempt,
                         company_id=company_id, group=group)
    with masking_scope() as scope:
        rendered, output, error = _run_spec(
            spec, context=context, company_id=company_id,
            resolver=scope.recording(company_secret_resolver(company_id)), execution_id=execution_id,
            node_id=node_id, attempt=attempt, shard=shard, shard_count=shard_count,
            idempotency_key=idempotency_key, timeout_s=timeout_s,
        )
    return masked_results(scope.mask, rendered, output, error)


def masked_results(mask: SecretMask, rendered, output, error) -> tuple[Any, Any, dict | None]:
    """(rendered input, output, error) with `mask` applied. What nests too deep to mask is not
    recorded: the input becomes a note, the output a (non-retryable) step error."""
    try:
        rendered = mask.apply(rendered)
    except MaskDepthError as exc:
        rendered = {"not_recorded": str(exc)}
    try:
        return rendered, mask.apply(output), mask.apply(error)
    except MaskDepthError as exc:
        return rendered, None, {"message": str(exc), "retryable": False, "details": {"reason": "too_deep"}}


def _run_spec(spec, *, context, company_id, resolver, execution_id, node_id, attempt, shard, shard_count,
              idempotency_key, timeout_s) -> tuple[Any, Any, dict | None]:
    rendered = None
    deadline_s = time.time() + timeout_s if timeout_s else None  # templates and step share it
    try:
        config = spec.get("config") or {}
        rendered = render(config, context, deadline_s=deadline_s)
        check_rendered_refs(config, rendered)
        ctx = StepContext(
            execution_id=execution_id,
            node_id=node_id,
            attempt=attempt,
            shard_index=shard,
            shard_count=shard_count,
            idempotency_key=idempotency_key,
            context=context,
            deadline_s=deadline_s,
            egress=company_egress_policy(company_id),
            mailer=send_step_email,
        )
        output = run_step({"type": spec["type"], "config": rendered}, ctx, render_templates=False,
                          secret_resolver=resolver)
        return rendered, output, None
    except Exception as exc:  # every failure becomes data: the retry policy decides
        return rendered, None, error_dict(exc, timeout_s=timeout_s)


def step_idempotency_key(execution_id, node_id: str, shard: int) -> str:
    """The key a step presents to the outside world: stable across attempts and redeliveries."""
    return idempotency_key(execution_id, node_id, shard)


def runs_in_transaction(job: dict[str, Any]) -> bool:
    """Side-effect-free steps run inside the transaction that claims and records them."""
    try:
        return get_step_type(job["type"]).side_effect_free
    except PipelineError:
        return False


def needs_upstream_outputs(job: dict[str, Any]) -> bool:
    """Whether running `job` reads upstream outputs: its config templates them, or its step type
    reads the context itself (a map's item: its child step). Otherwise a claim loads statuses only."""
    if is_map(job.get("type")):
        return item_reads_upstream(job)
    if find_templates(job.get("config") or {}, "config"):
        return True
    try:
        return get_step_type(job["type"]).reads_context
    except PipelineError:
        return True  # an unknown type fails when it runs; reading more is the safe side


def new_attempt(execution: Execution, job: dict[str, Any], shard: int, shard_count: int, previous: list,
                delivery: Delivery, *, deferred: bool) -> StepRun:
    """The next (unsaved, running) attempt of a shard after its `previous` attempts. A deferred one
    is recorded only with its result, never as running, so it is never re-published: no request."""
    return StepRun(
        execution=execution, node_id=job["id"], shard=shard, shard_count=shard_count,
        attempt=max((run.attempt for run in previous), default=0) + 1, group=job["group"], queue=delivery.queue,
        worker=delivery.worker, task_id=delivery.task_id, pid=delivery.pid, started_at=timezone.now(),
        request={} if deferred else delivery.request, status=StepStatus.RUNNING,
    )


def started_data(run: StepRun) -> dict[str, Any]:
    return {"node_id": run.node_id, "shard": run.shard, "attempt": run.attempt, "worker": run.worker,
            "queue": run.queue}


# The unlocked path of a side-effect-free step hands any failure to the locked path, which runs
# the same attempt again. A jq program that exhausted its limits would burn its budget twice (and
# the second time meet Celery's soft limit instead), so such a result is remembered per attempt.
_exhausted: OrderedDict[tuple, tuple] = OrderedDict()
EXHAUSTED_MEMO_SIZE = 64


def run_attempt(company_id: int, run: StepRun, job: dict[str, Any], context: dict) -> tuple[Any, Any, dict | None]:
    """Run a claimed attempt's step: (rendered input, output, error dict or None).

    What runs is the artifact the job was pinned to (`job["artifact"]`, its digest): from this
    process's artifact cache, else loaded from the store and checked; a missing or altered one is a
    non-retryable error naming the job and digests. (Runs pinned before the store existed have no
    digest and run the graph's copy.) A map node's shard runs the map's child step on its item."""
    key = (str(run.execution_id), run.node_id, run.shard, run.attempt)
    if key in _exhausted:
        return _exhausted[key]
    try:
        spec = pinned_artifact(company_id, job, worker=run.worker, deployment_id=run.execution.deployment_id)
    except ArtifactRefused as exc:
        return None, None, exc.to_error()
    if spec is not None:
        job = runnable_job(job, spec)
    if is_map(job.get("type")):  # shard i of a map node runs its child step on item i
        try:
            job, context = map_item_run(run.execution_id, run.node_id, run.shard, job, context)
        except StepFailed as exc:
            return None, None, exc.to_dict()
    context["shard"] = {"index": run.shard, "count": run.shard_count}
    result = run_spec(
        job,
        context=context,
        company_id=company_id,
        execution_id=str(run.execution_id),
        node_id=run.node_id,
        attempt=run.attempt,
        shard=run.shard,
        shard_count=run.shard_count,
        idempotency_key=step_idempotency_key(run.execution_id, run.node_id, run.shard),
        timeout_s=job.get("timeout_s"),
        group=run.group,
    )
    error = result[2]
    if error and error.get("code") == RESOURCE_EXHAUSTED:
        _exhausted[key] = result
        while len(_exhausted) > EXHAUSTED_MEMO_SIZE:
            _exhausted.popitem(last=False)
    return result


def pinned_artifact(company_id: int, job: dict[str, Any], *, worker: str, deployment_id) -> dict[str, Any] | None:
    """The verified spec of the artifact `job` was pinned to (`job["artifact"]`): this process's
    cache, else the store (`artifact_spec`); None when the job names none (a run pinned before
    the store existed, or a config an operator modified: the graph's copy runs). Raises
    `ArtifactRefused` for a missing or altered artifact."""
    if not job.get("artifact"):
        return None
    return artifact_spec(company_id=company_id, digest=job["artifact"], job_id=job["id"], worker=worker,
                         key=lambda: artifact_key(deployment_id, job["id"]))


def compensation_spec(company_id: int, job: dict[str, Any], *, worker: str, deployment_id) -> dict[str, Any]:
    """The `compensate` spec a compensation of `job` runs: its pinned artifact's, as a step runs
    its artifact's spec (the graph's copy only when the job names no artifact). Raises
    `ArtifactRefused` for a missing or altered artifact, or one without a compensation."""
    spec = pinned_artifact(company_id, job, worker=worker, deployment_id=deployment_id)
    compensate = job.get("compensate") if spec is None else spec.get("compensate")
    if not compensate:
        raise ArtifactRefused(ARTIFACT_NOT_FOUND, f"job {job['id']!r} is pinned to artifact {job.get('artifact')}, "
                              "which holds no compensation to run", job_id=job["id"], expected=job.get("artifact"))
    return compensate


def company_secret_resolver(company_id: int):
    """Resolve `{"$secret": name}` from the company's secrets; a missing one is a LookupError,
    which `run_step` reports as a (non-retryable) missing_secret config error."""

    def resolve(name: str) -> str:
        try:
            return secret_resolve(company_id=company_id, name=name)
        except ApplicationError as exc:
            raise LookupError(exc.detail) from None

    return resolve


def error_dict(exc: BaseException, *, timeout_s: float | None = None) -> dict[str, Any]:
    """{message, retryable, details}: StepFailed says; config/template errors and a jq program
    over its limits (code "resource_exhausted") never heal; a timeout and unexpected
    exceptions may."""
    if isinstance(exc, StepFailed):
        out = exc.to_dict()
        if isinstance(exc.__cause__, SoftTimeLimitExceeded):  # a step type wrapped the time limit
            out["details"] = {**out["details"], "reason": "timeout", "timeout_s": timeout_s}
        return out
    if isinstance(exc, SoftTimeLimitExceeded):
        return {"message": f"step exceeded its timeout of {timeout_s}s", "retryable": True,
                "details": {"reason": "timeout"}}
    if isinstance(exc, ResourceExhausted):  # jq over its time budget or memory cap: never heals
        return exc.to_dict()
    if isinstance(exc, TemplateError):
        return {"message": str(exc), "retryable": False,
                "details": {"path": exc.path, "expression": exc.expression}}
    if isinstance(exc, StepConfigError):
        return {"message": str(exc), "retryable": False, "details": {"issues": [i.to_dict() for i in exc.issues]}}
    if isinstance(exc, PipelineError):
        return {"message": str(exc), "retryable": False, "details": {}}
    return {"message": f"{type(exc).__name__}: {exc}", "retryable": True, "details": {"reason": "exception"}}


def attempt_expired(run: StepRun, job: dict[str, Any]) -> bool:
    """True when a running attempt is past its hard time limit: nobody is running it any more."""
    return expired(run.started_at, job.get("timeout_s"), timezone.now())


def process_gone(run: StepRun, delivery: Delivery) -> bool:
    """Whether `run`, running, was claimed by another process of the very worker now delivering
    it again, and that process has exited: Celery re-queued the message of a killed pool child."""
    if not run.pid or not delivery.worker or run.worker != delivery.worker or run.pid == delivery.pid:
        return False
    try:
        os.kill(run.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        return False
    return False


def mark_lost(execution: Execution, run: StepRun, *, reason: str, counts: bool = True,
              retry_in_s: float | None = None) -> None:
    """Record that a running attempt will never report (its worker died or it was killed), with its
    `step.lost` event. `counts`: whether it counts against the node's max_attempts (not when the
    engine's own database failed under it; see `pipelines.engine.decider`). `retry_in_s`: the
    node's retry delay the next attempt waits, when the caller knows it (the event says so)."""
    run.status = StepStatus.LOST
    run.finished_at = timezone.now()
    details = {"worker": run.worker} if counts else {"worker": run.worker, "counts": False}
    run.error = {"message": reason, "retryable": True, "details": details}
    store_write(execution=execution, update=[(run, ["status", "finished_at", "error"])], events=[(
        EventType.STEP_LOST,
        {"node_id": run.node_id, "shard": run.shard, "attempt": run.attempt, "worker": run.worker,
         "compensation": run.is_compensation, "reason": reason,
         **({"retry_in_s": round(retry_in_s, 3)} if retry_in_s is not None else {})},
    )])


def lost_counts(error: dict[str, Any] | None) -> bool:
    """Whether a lost attempt (its stored `error`) counts against the node's max_attempts."""
    return ((error or {}).get("details") or {}).get("counts", True) is not False
