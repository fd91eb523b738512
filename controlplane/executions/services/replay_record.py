"""Pre-recording a replay's steps: reused outputs (from_step) and mocked ones (modified).

Written in the transaction that starts the replay, before its canvas is published (that waits
for the commit): each shard gets a succeeded (or skipped) attempt with a `step.reused` or
`step.mocked` event, so the claims of the new run find it recorded and never run it.
"""
from __future__ import annotations

from typing import Any

from django.utils import timezone

from controlplane.executions.models import EventType, Execution, StepRun, StepStatus
from controlplane.executions.services.events import events_append_with_run
from controlplane.fleet.models import queue_name_for

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
    """The `candidates` whose every shard completed in `original` with the same shard count."""
    shards = recorded_shards(original)
    out = {}
    for job in replay.graph["jobs"]:
        runs = shards.get(job["id"], {})
        if job["id"] in candidates and len(runs) == job["replicas"] and all(
            run.shard_count == job["replicas"] for run in runs.values()
        ):
            out[job["id"]] = runs
    return out


def _attempt(replay: Execution, job: dict[str, Any], shard: int, status: str, *, input, output) -> StepRun:
    now = timezone.now()
    return StepRun(
        execution=replay, node_id=job["id"], shard=shard, shard_count=job["replicas"], attempt=1,
        group=job["group"], queue=queue_name_for(replay.company.slug, job["group"]), status=status,
        input=input, output=output, started_at=now, finished_at=now, request={},
    )


def record_reused(locked: Execution, job: dict[str, Any], runs: dict[int, StepRun]) -> None:
    """Record each shard of `job` with the outcome of the original's attempt `runs[shard]`."""
    for shard, source in sorted(runs.items()):
        skipped = source.status == StepStatus.SKIPPED
        run = _attempt(locked, job, shard, StepStatus.SKIPPED if skipped else StepStatus.SUCCEEDED,
                       input=source.input, output=None if skipped else source.output)
        data = {"node_id": job["id"], "shard": shard, "attempt": 1, "status": run.status, "output": run.output,
                "reused_from": {"execution": str(source.execution_id), "step_run": source.pk,
                                "attempt": source.attempt}}
        events_append_with_run(execution=locked, run=run, events=[(EventType.STEP_REUSED, data)],
                               completed=not skipped)


def record_mocked(locked: Execution, job: dict[str, Any], output: Any) -> None:
    """Record every shard of `job` succeeded with `output` (a list of one output per shard is
    split across the shards of a replicated node)."""
    replicas = job["replicas"]
    per_shard = output if replicas > 1 and isinstance(output, list) and len(output) == replicas else None
    for shard in range(replicas):
        value = per_shard[shard] if per_shard is not None else output
        run = _attempt(locked, job, shard, StepStatus.SUCCEEDED, input=None, output=value)
        data = {"node_id": job["id"], "shard": shard, "attempt": 1, "output": value, "mocked": True}
        events_append_with_run(execution=locked, run=run, events=[(EventType.STEP_MOCKED, data)], completed=True)
