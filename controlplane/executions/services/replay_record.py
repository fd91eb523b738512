"""Pre-recording a replay's steps: reused outputs (from_step) and mocked ones (modified).

Written in the transaction that starts the replay, before its canvas is published (that waits
for the commit): each shard gets a succeeded (or skipped) attempt with a `step.reused` or
`step.mocked` event, so the claims of the new run find it recorded and never run it.
"""
from __future__ import annotations

from typing import Any

from django.utils import timezone

from controlplane.executions.models import EventType, Execution, StepRun, StepStatus
from controlplane.executions.services.events import event_append, events_append_with_run
from controlplane.executions.services.map_items import map_expansion
from controlplane.fleet.models import queue_name_for
from pipelines.engine.fanout import is_map

# Attempt statuses of a shard whose step had succeeded (a later saga may have undone it since).
SUCCEEDED_ONCE = (StepStatus.SUCCEEDED, StepStatus.COMPENSATING, StepStatus.COMPENSATED,
                  StepStatus.COMPENSATION_FAILED)


def recorded_shards(original: Execution) -> dict[str, dict[int, StepRun]]:
    """{node: {shard: the attempt whose result stands}} of `original`: its succeeded attempt, else
    its skipped one. Shards that never completed are left out."""
    out: dict[str, dict[int, StepRun]] = {}
    for run in StepRun.objects.filter(execution=original, is_compensation=False).order_by("attempt"):
        if run.status in SUCCEEDED_ONCE or run.status == StepStatus.SKIPPED:
            kept = out.setdefault(run.node_id, {}).get(run.shard)
            if kept is None or kept.status == StepStatus.SKIPPED:
                out[run.node_id][run.shard] = run
    return out


def reusable_nodes(replay: Execution, original: Execution, candidates: set[str]) -> dict[str, dict[int, StepRun]]:
    """The `candidates` whose every shard completed in `original` with the same shard count (a map's:
    the item count it recorded; an empty map's join is its one row)."""
    shards = recorded_shards(original)
    out = {}
    for job in replay.graph["jobs"]:
        runs = shards.get(job["id"], {})
        width = runs[0].shard_count if is_map(job["type"]) and 0 in runs else job["replicas"]
        if job["id"] in candidates and len(runs) == max(width, 1) and all(
            run.shard_count == width for run in runs.values()
        ):
            out[job["id"]] = runs
    return out


def _attempt(replay: Execution, job: dict[str, Any], shard: int, status: str, *, input, output,
             shard_count: int | None = None) -> StepRun:
    now = timezone.now()
    return StepRun(
        execution=replay, node_id=job["id"], shard=shard,
        shard_count=job["replicas"] if shard_count is None else shard_count, attempt=1,
        group=job["group"], queue=queue_name_for(replay.company.slug, job["group"]), status=status,
        input=input, output=output, started_at=now, finished_at=now, request={},
    )


def record_reused(locked: Execution, job: dict[str, Any], runs: dict[int, StepRun]) -> None:
    """Record each shard of `job` with the outcome of the original's attempt `runs[shard]` (and a
    map's items with them: its compensations see them)."""
    if is_map(job["type"]) and runs:
        expansion = map_expansion(next(iter(runs.values())).execution_id, job["id"])
        if expansion is not None:
            event_append(execution=locked, type=EventType.MAP_EXPANDED, data=expansion)
    for shard, source in sorted(runs.items()):
        skipped = source.status == StepStatus.SKIPPED
        run = _attempt(locked, job, shard, StepStatus.SKIPPED if skipped else StepStatus.SUCCEEDED,
                       input=source.input, output=None if skipped else source.output, shard_count=source.shard_count)
        data = {"node_id": job["id"], "shard": shard, "attempt": 1, "status": run.status, "output": run.output,
                "reused_from": {"execution": str(source.execution_id), "step_run": source.pk,
                                "attempt": source.attempt}}
        events_append_with_run(execution=locked, run=run, events=[(EventType.STEP_REUSED, data)],
                               completed=not skipped)


def record_mocked(locked: Execution, job: dict[str, Any], output: Any) -> None:
    """Record every shard of `job` succeeded with `output` (a list of one output per shard is
    split across the shards of a replicated node; a map's is its items' outputs, one shard each)."""
    replicas = job["replicas"]
    per_shard = output if replicas > 1 and isinstance(output, list) and len(output) == replicas else None
    width = replicas
    if is_map(job["type"]):
        per_shard = output if isinstance(output, list) else [output]
        width = len(per_shard)
    for shard in range(max(width, 1)):
        value = (per_shard[shard] if width else []) if per_shard is not None else output
        run = _attempt(locked, job, shard, StepStatus.SUCCEEDED, input=None, output=value, shard_count=width)
        data = {"node_id": job["id"], "shard": shard, "attempt": 1, "output": value, "mocked": True}
        events_append_with_run(execution=locked, run=run, events=[(EventType.STEP_MOCKED, data)], completed=True)
