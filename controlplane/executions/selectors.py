"""Reads of the executions app: tenant-scoped lists, the timeline, the event log."""
from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import Count, QuerySet

from controlplane.core.errors import NotFound
from controlplane.executions.models import DeadLetter, EventType, Execution, ExecutionEvent, ExecutionStatus, StepRun
from controlplane.tenancy.access import member_company_ids
from pipelines.engine.segments import GATE_TYPES, split_segments


def execution_list(
    *,
    user,
    status: str | None = None,
    workflow_id: int | None = None,
    version_id: int | None = None,
    deployment_id: int | None = None,
    environment: str | None = None,
    created_after=None,
    created_before=None,
    trigger: str | None = None,
) -> QuerySet:
    """Executions of the caller's companies, newest first, filtered."""
    qs = Execution.objects.filter(company_id__in=member_company_ids(user)).select_related(
        "version__workflow", "company"
    )
    if deployment_id is not None:
        qs = qs.filter(deployment_id=deployment_id)
    if environment:
        qs = qs.filter(environment=environment)
    if status:
        qs = qs.filter(status=status)
    if workflow_id is not None:
        qs = qs.filter(version__workflow_id=workflow_id)
    if version_id is not None:
        qs = qs.filter(version_id=version_id)
    if created_after is not None:
        qs = qs.filter(created_at__gte=created_after)
    if created_before is not None:
        qs = qs.filter(created_at__lt=created_before)
    if trigger:
        qs = qs.filter(trigger=trigger)
    return qs.order_by("-created_at")


def execution_status_counts(*, user, **filters) -> dict[str, int]:
    """{status: count} of the executions `execution_list` would return (every status, zeros too):
    one GROUP BY on the status index, for the dashboard."""
    counts = dict.fromkeys(ExecutionStatus.values, 0)
    rows = execution_list(user=user, **filters).order_by().values_list("status").annotate(n=Count("id"))
    for status, n in rows:
        counts[status] = n
    return counts


def execution_get(*, user, execution_id) -> Execution:
    """One execution of the caller's companies; another tenant's (or a malformed id) is a 404."""
    try:
        return execution_list(user=user).get(pk=execution_id)
    except (Execution.DoesNotExist, ValidationError, ValueError, TypeError):  # a malformed UUID: ValidationError
        raise NotFound(f"execution {execution_id} not found") from None


# What the timeline reads of a run: not its canvas, input, version or company (a fan-out's canvas
# alone is tens of kilobytes of JSON to fetch and decode on every poll).
TIMELINE_EXECUTION_FIELDS = ("id", "company_id", "status", "graph", "error", "created_at", "started_at", "finished_at")
# ... and of its attempts: not the stored Celery request each carries (kept for re-publishing).
TIMELINE_RUN_FIELDS = ("node_id", "shard", "shard_count", "attempt", "status", "is_compensation", "group", "queue",
                       "worker", "started_at", "finished_at", "input", "output", "error")


def execution_get_for_timeline(*, user, execution_id) -> Execution:
    """`execution_get` with only what `execution_timeline` reads (same tenancy, same 404s)."""
    try:
        return (Execution.objects.filter(company_id__in=member_company_ids(user))
                .only(*TIMELINE_EXECUTION_FIELDS).get(pk=execution_id))
    except (Execution.DoesNotExist, ValidationError, ValueError, TypeError):
        raise NotFound(f"execution {execution_id} not found") from None


def execution_events(*, execution: Execution, after: int = 0, limit: int = 1000) -> QuerySet:
    return ExecutionEvent.objects.filter(execution=execution, seq__gt=after).order_by("seq")[:limit]


def _ms(start, end) -> int | None:
    return int((end - start).total_seconds() * 1000) if start and end else None


def _entry(attempts: list[StepRun]) -> dict[str, Any]:
    last = attempts[-1]
    started = attempts[0].started_at
    return {
        "node_id": last.node_id,
        "shard": last.shard,
        "shard_count": last.shard_count,
        "status": last.status,
        "attempts": len(attempts),
        "group": last.group,
        "queue": last.queue,
        "worker": last.worker,
        "started_at": started,
        "finished_at": last.finished_at,
        "duration_ms": _ms(started, last.finished_at),
        "input": last.input,
        "output": last.output,
        "error": last.error,
        "attempt_history": [
            {"attempt": a.attempt, "status": a.status, "worker": a.worker, "started_at": a.started_at,
             "finished_at": a.finished_at, "duration_ms": a.duration_ms, "error": a.error}
            for a in attempts
        ],
    }


def execution_timeline(*, execution: Execution) -> dict[str, Any]:
    """Per step and shard: status, attempts, group, worker, timing, input, output, error; then the
    compensations; and the run's total duration. Steps in graph order, shards by index."""
    grouped: dict[tuple[bool, str, int], list[StepRun]] = defaultdict(list)
    for run in StepRun.objects.filter(execution=execution).order_by("attempt").only(*TIMELINE_RUN_FIELDS):
        grouped[(run.is_compensation, run.node_id, run.shard)].append(run)
    order = {job["id"]: i for i, job in enumerate(execution.graph.get("jobs", []))}

    def entries(compensation: bool) -> list[dict[str, Any]]:
        keys = sorted((k for k in grouped if k[0] == compensation), key=lambda k: (order.get(k[1], 1e9), k[2]))
        return [_entry(grouped[k]) for k in keys]

    compensations = entries(True)
    compensations.sort(key=lambda e: e["started_at"] or execution.created_at)
    timeline = {
        "execution": str(execution.pk),
        "status": execution.status,
        "started_at": execution.started_at,
        "finished_at": execution.finished_at,
        "duration_ms": _ms(execution.started_at, execution.finished_at),
        "steps": entries(False),
        "compensations": compensations,
        "cancelled": _cancelled_steps(execution),
        "error": execution.error,
    }
    _add_gates(execution, timeline, order)
    return timeline


def _add_gates(execution: Execution, timeline: dict[str, Any], order: dict[str, int]) -> None:
    """For a run cut into segments (gates: approval, map): `segments` with when each was
    dispatched, and per approval step its wait: the step's entry carries `approval` (who decided,
    when), and a pending approval, which has no attempt yet, gets an entry `waiting` since it was
    asked (its bar grows until someone decides)."""
    jobs = execution.graph.get("jobs", [])
    if not any(job.get("type") in GATE_TYPES for job in jobs):
        return
    dispatched = {event.data.get("index"): event.created_at for event in
                  execution.events.filter(type=EventType.SEGMENT_DISPATCHED).only("data", "created_at")}
    timeline["segments"] = [
        {**segment.to_dict(), "dispatched_at": execution.started_at if segment.index == 0 and segment.nodes
         else dispatched.get(segment.index)}
        for segment in split_segments(jobs, execution.graph.get("edges", []))]
    by_node = {entry["node_id"]: entry for entry in timeline["steps"]}
    for approval in execution.approvals.select_related("decided_by").order_by("id"):
        facts = {"id": approval.pk, "status": approval.status, "requested_at": approval.created_at,
                 "deadline": approval.deadline, "decided_at": approval.decided_at, "comment": approval.comment,
                 "decided_by": approval.decided_by.username if approval.decided_by else None}
        entry = by_node.get(approval.node_id)
        if entry is None:
            entry = by_node[approval.node_id] = {
                "node_id": approval.node_id, "shard": 0, "shard_count": 1, "attempts": 0, "group": "", "queue": "",
                "worker": "", "started_at": approval.created_at, "finished_at": approval.decided_at,
                "duration_ms": _ms(approval.created_at, approval.decided_at), "input": None, "output": None,
                "error": None, "attempt_history": [],
                "status": "waiting" if approval.status == "pending" else approval.status}
            timeline["steps"].append(entry)
        entry["approval"] = facts
    timeline["steps"].sort(key=lambda e: (order.get(e["node_id"], 1e9), e["shard"]))


# Statuses a cancelled run can be in (its saga may be running, or have failed).
_AFTER_CANCEL = (ExecutionStatus.CANCELLED, ExecutionStatus.COMPENSATING, ExecutionStatus.COMPENSATION_FAILED)


def _cancelled_steps(execution: Execution) -> list[dict[str, Any]]:
    """The steps a cancel stopped, from their `step.cancelled` events: {node_id, shard, state
    (pending, retrying, interrupted, finishing), attempt?, at}; shards that never started have no
    step run, so this is where the timeline shows them."""
    if execution.status not in _AFTER_CANCEL:
        return []
    events = ExecutionEvent.objects.filter(execution=execution, type=EventType.STEP_CANCELLED).order_by("seq")
    return [{**event.data, "at": event.created_at} for event in events.only("data", "created_at")]


def dead_letter_list(
    *,
    user,
    execution_id=None,
    status: str | None = None,
    workflow_id: int | None = None,
    deployment_id: int | None = None,
    node_id: str | None = None,
    created_after=None,
    created_before=None,
) -> QuerySet:
    """Dead letters of the caller's companies, newest first, filtered; `status` is pending (alias
    open: neither replayed nor discarded), replayed or discarded."""
    qs = DeadLetter.objects.filter(execution__company_id__in=member_company_ids(user)).select_related(
        "execution__version", "resolved_by"
    )
    if execution_id is not None:
        qs = qs.filter(execution_id=execution_id)
    if workflow_id is not None:
        qs = qs.filter(execution__version__workflow_id=workflow_id)
    if deployment_id is not None:
        qs = qs.filter(execution__deployment_id=deployment_id)
    if node_id:
        qs = qs.filter(node_id=node_id)
    if status in ("pending", "open"):
        qs = qs.filter(replayed_at__isnull=True, discarded_at__isnull=True)
    elif status == "replayed":
        qs = qs.filter(replayed_at__isnull=False, discarded_at__isnull=True)
    elif status == "discarded":
        qs = qs.filter(discarded_at__isnull=False)
    if created_after is not None:
        qs = qs.filter(created_at__gte=created_after)
    if created_before is not None:
        qs = qs.filter(created_at__lt=created_before)
    return qs.order_by("-created_at", "-id")


def dead_letter_get(*, user, dead_letter_id) -> DeadLetter:
    """One dead letter of the caller's companies; another tenant's is a 404."""
    try:
        return dead_letter_list(user=user).get(pk=int(dead_letter_id))
    except (DeadLetter.DoesNotExist, ValueError, TypeError):
        raise NotFound(f"dead letter {dead_letter_id} not found") from None
