"""Chained workflows: a run that ends starts the runs that wait for it (`on: {workflow, status}`).

Nothing in the run's own finish path does this: the triggers sweep (beat, every few seconds) looks
for upstream runs that finished since each chain trigger was registered, and for each pair inserts
a `ChainRun` (unique per upstream run and downstream deployment) in the same transaction as the
downstream run. A worker dying right after a run finished therefore loses nothing, and two sweeps
at once start the downstream run once: the second insert waits for the first and fails.

The downstream run's input is `{"upstream": {execution, workflow, status, output}}`, where
`output` maps each of the upstream graph's final jobs (no downstream edge) to its output.
"""
from __future__ import annotations

import logging
from datetime import timedelta

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


def chains_fire() -> int:
    """For the triggers sweep: start the downstream runs of upstream runs that finished; returns how many."""
    started = 0
    since = timezone.now() - _lookback()
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
            started += _chain_one(trigger, upstream)
    return started


def _chain_one(trigger: ChainTrigger, upstream: Execution) -> int:
    try:
        with transaction.atomic():
            link = ChainRun.objects.create(upstream=upstream, deployment=trigger.deployment)
            payload = {"upstream": {"execution": str(upstream.pk), "workflow": trigger.upstream.slug,
                                    "status": upstream.status, "output": upstream_output(upstream)}}
            try:
                execution, _ = execution_start(
                    deployment=trigger.deployment_id, input=payload, user=SYSTEM, trigger=Trigger.WORKFLOW,
                    idempotency_key=f"chain:{upstream.pk}:{trigger.deployment_id}",
                    trigger_details={"upstream_execution": str(upstream.pk), "upstream_workflow": trigger.upstream.slug,
                                     "upstream_status": upstream.status},
                )
            except ApplicationError as exc:  # recorded, not retried: the row says why no run started
                link.error = exc.to_dict()
                link.save(update_fields=["error"])
                logger.warning("chain.refused", extra={"upstream": str(upstream.pk), "error": exc.code})
                return 0
            link.execution = execution
            link.save(update_fields=["execution"])
    except IntegrityError:  # another sweep chained this pair first
        return 0
    logger.info("chain.started", extra={"upstream": str(upstream.pk), "execution_id": str(execution.pk)})
    return 1
