"""Chained workflows: a run that ends starts the runs that wait for it (`on: {workflow, status}`).

Nothing in the run's own finish path does this: the triggers sweep (beat, every few seconds) looks
for upstream runs that finished since each chain trigger was registered, and for each pair inserts
a `ChainRun` (unique per upstream run and downstream deployment) in the same transaction as the
downstream run. A worker dying right after a run finished therefore loses nothing, and two sweeps
at once start the downstream run once: the second insert waits for the first and fails.

A start refused for a passing reason (`no_live_worker`: the downstream group's workers are down)
is tried again by later sweeps, the delay doubling from `CHAIN_RETRY_INITIAL_S` up to
`CHAIN_RETRY_MAX_DELAY_S`, at most `CHAIN_RETRY_MAX_TRIES` tries in all; each refused try is
appended to `ChainRun.tries`, and `next_try_at` says when the next one is due (empty: no more).
Any other refusal is recorded once and not retried.

The downstream run's input is `{"upstream": {execution, workflow, status, output}}`, where
`output` maps each of the upstream graph's final jobs (no downstream edge) to its output.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from controlplane.core.errors import ApplicationError
from controlplane.deployments.models import DeploymentStatus
from controlplane.executions.models import Execution, ExecutionStatus, StepRun, StepStatus, Trigger
from controlplane.executions.services.start import SYSTEM, execution_start
from controlplane.triggers.models import ChainRun, ChainTrigger
from pipelines.engine.fanout import is_map
from pipelines.triggers import status_matches

logger = logging.getLogger(__name__)

FINISHED = (ExecutionStatus.SUCCEEDED, ExecutionStatus.FAILED, ExecutionStatus.COMPENSATED,
            ExecutionStatus.COMPENSATION_FAILED)
BATCH = 100
# Refusals that pass by themselves: a worker of the group comes (back) up.
RETRYABLE = frozenset({"no_live_worker"})


def _lookback() -> timedelta:
    # Upstream runs older than this are not chained any more (a sweep that was down for longer).
    return timedelta(seconds=float(getattr(settings, "CHAIN_LOOKBACK_S", 24 * 3600)))


def upstream_output(execution: Execution) -> dict:
    """{job id: output} of the run's final jobs (shards as a list; a map's items always one)."""
    jobs = execution.graph.get("jobs", [])
    sources = {edge["from"] for edge in execution.graph.get("edges", [])}
    sinks = {j["id"]: j for j in jobs if j["id"] not in sources}
    out: dict = {}
    rows = (StepRun.objects.filter(execution=execution, node_id__in=list(sinks), is_compensation=False,
                                   status=StepStatus.SUCCEEDED).order_by("node_id", "shard", "attempt")
            .values_list("node_id", "shard", "output", "shard_count"))
    by_shard = {(node, shard): output for node, shard, output, _ in rows}
    widths = {node: count for node, _, _, count in rows}  # a map's width is recorded with its shards
    for node_id, job in sinks.items():
        mapped = is_map(job.get("type"))
        width = widths.get(node_id, 0) if mapped else job.get("replicas", 1)
        shards = [by_shard.get((node_id, i)) for i in range(width)]
        out[node_id] = shards[0] if len(shards) == 1 and not mapped else shards
    return out


def chains_fire(*, now: datetime | None = None) -> int:
    """For the triggers sweep: start the downstream runs of upstream runs that finished, and try
    again those refused for a passing reason whose next try is due; returns how many started."""
    now = now or timezone.now()
    started = 0
    since = now - _lookback()
    triggers = ChainTrigger.objects.filter(deployment__status=DeploymentStatus.ACTIVE).select_related(
        "deployment", "upstream")
    for trigger in triggers:
        statuses = [s for s in FINISHED if status_matches(trigger.status, s)]
        upstream_runs = (Execution.objects.filter(
            deployment__workflow_id=trigger.upstream_id, environment=trigger.deployment.environment,
            status__in=statuses, finished_at__gte=max(since, trigger.created_at))
            .exclude(pk__in=ChainRun.objects.filter(deployment=trigger.deployment).values("upstream_id"))
            .order_by("finished_at")[:BATCH])
        for upstream in upstream_runs:
            started += _chain_one(trigger, upstream, now)
    return started + _retry_due(now)


def _chain_one(trigger: ChainTrigger, upstream: Execution, now: datetime) -> int:
    try:
        with transaction.atomic():
            link = ChainRun.objects.create(upstream=upstream, deployment=trigger.deployment)
            return _try_start(link, trigger.upstream.slug, now)
    except IntegrityError:  # another sweep chained this pair first
        return 0


def _retry_due(now: datetime) -> int:
    """Try again each refused pair whose next try is due (while its deployment is active)."""
    started = 0
    due = list(ChainRun.objects.filter(next_try_at__lte=now, execution__isnull=True,
                                       deployment__status=DeploymentStatus.ACTIVE)
               .order_by("next_try_at").values_list("pk", flat=True)[:BATCH])
    for pk in due:
        with transaction.atomic():
            # Locked and re-read: a sweep running beside this one skips the pair, never tries it twice.
            link = (ChainRun.objects.select_for_update(skip_locked=True, of=("self",))
                    .select_related("upstream__deployment__workflow")
                    .filter(pk=pk, next_try_at__lte=now, execution__isnull=True).first())
            if link is not None:
                started += _try_start(link, link.upstream.deployment.workflow.slug, now)
    return started


def _try_start(link: ChainRun, upstream_workflow: str, now: datetime) -> int:
    """Start the downstream run of `link` (in the caller's transaction); a refusal is recorded
    as one more try, with the next one scheduled when the reason may pass."""
    upstream = link.upstream
    payload = {"upstream": {"execution": str(upstream.pk), "workflow": upstream_workflow,
                            "status": upstream.status, "output": upstream_output(upstream)}}
    try:
        execution, _ = execution_start(
            deployment=link.deployment_id, input=payload, user=SYSTEM, trigger=Trigger.WORKFLOW,
            idempotency_key=f"chain:{upstream.pk}:{link.deployment_id}",
            trigger_details={"upstream_execution": str(upstream.pk), "upstream_workflow": upstream_workflow,
                             "upstream_status": upstream.status},
        )
    except ApplicationError as exc:
        link.error = exc.to_dict()
        link.tries = [*link.tries, {"at": now.isoformat(), "error": link.error}]
        link.next_try_at = next_try_at(exc.code, len(link.tries), now)
        link.save(update_fields=["error", "tries", "next_try_at"])
        logger.warning("chain.refused", extra={"upstream": str(upstream.pk), "error": exc.code, "tries": len(link.tries),
                                               "next_try_at": link.next_try_at and link.next_try_at.isoformat()})
        return 0
    link.execution, link.error, link.next_try_at = execution, None, None
    link.save(update_fields=["execution", "error", "next_try_at"])
    logger.info("chain.started", extra={"upstream": str(upstream.pk), "execution_id": str(execution.pk),
                                        "tries": len(link.tries) + 1})
    return 1


def next_try_at(code: str, tries: int, now: datetime) -> datetime | None:
    """When to try again after `tries` refused tries, or None: a refusal a retry cannot mend (bad
    placement, nothing deployed) or the last try (`CHAIN_RETRY_MAX_TRIES`). The delay doubles from
    `CHAIN_RETRY_INITIAL_S` up to `CHAIN_RETRY_MAX_DELAY_S`."""
    if code not in RETRYABLE or tries >= settings.CHAIN_RETRY_MAX_TRIES:
        return None
    delay = min(settings.CHAIN_RETRY_MAX_DELAY_S, settings.CHAIN_RETRY_INITIAL_S * 2 ** min(tries - 1, 40))  # no float overflow
    return now + timedelta(seconds=delay)
