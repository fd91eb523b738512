"""Reads of the fleet app: live workers, capacity per group, and the snapshot the planner uses."""
from __future__ import annotations

from typing import Iterable

from django.db.models import Count, Prefetch, Q, QuerySet, Sum
from django.utils import timezone

from controlplane.core.errors import NotFound
from controlplane.fleet.models import Worker, WorkerGroup, offline_threshold, parse_queue_name
from controlplane.tenancy.access import member_company_ids
from controlplane.tenancy.models import Company


def live_workers(group: WorkerGroup, *, now=None) -> QuerySet:
    """Workers of the group that are online with a fresh heartbeat."""
    return Worker.objects.live(now=now).filter(groups=group)


def group_live_concurrency(group: WorkerGroup, *, now=None) -> int:
    """Task slots the group has right now: the sum of its live workers' concurrency."""
    return live_workers(group, now=now).aggregate(total=Sum("concurrency"))["total"] or 0


def _live_q(now) -> Q:
    return Q(workers__status="online", workers__last_heartbeat__gt=now - offline_threshold())


def groups_with_capacity(groups: QuerySet, *, now=None) -> QuerySet:
    """Annotate groups with `live_workers_count` and `live_concurrency` (one query, no N+1)."""
    now = now or timezone.now()
    live = _live_q(now)
    return groups.annotate(
        live_workers_count=Count("workers", filter=live, distinct=True),
        live_concurrency=Sum("workers__concurrency", filter=live),
    )


def fleet_snapshot(company: Company, *, now=None) -> dict[str, dict]:
    """Per group slug: live worker count, live concurrency, advertised step types, queue name.

    Step types are those advertised by at least one live worker of the group (the union).
    """
    now = now or timezone.now()
    groups = WorkerGroup.objects.filter(company=company).select_related("company").prefetch_related(
        Prefetch("workers", queryset=Worker.objects.live(now=now).only("id", "concurrency", "step_types"), to_attr="live")
    )
    snapshot = {}
    for group in groups:
        step_types: set[str] = set()
        for worker in group.live:
            step_types.update(worker.step_types or [])
        snapshot[group.slug] = {
            "live_workers": len(group.live),
            "concurrency": sum(worker.concurrency for worker in group.live),
            "step_types": step_types,
            "queue": group.queue_name,
        }
    return snapshot


def groups_by_queue(queue_names: Iterable[str]) -> dict[str, WorkerGroup]:
    """Existing worker groups for the given queue names, keyed by queue; other names are left out."""
    wanted = Q()
    any_wanted = False
    for queue in set(queue_names):
        parsed = parse_queue_name(queue)
        if parsed:
            wanted |= Q(company__slug=parsed[0], slug=parsed[1])
            any_wanted = True
    if not any_wanted:
        return {}
    return {group.queue_name: group for group in WorkerGroup.objects.filter(wanted).select_related("company")}


def worker_group_list(*, user) -> QuerySet:
    """Groups of the caller's companies, with live capacity annotated."""
    groups = WorkerGroup.objects.filter(company_id__in=member_company_ids(user)).select_related("company")
    return groups_with_capacity(groups).order_by("company__slug", "slug")


def worker_list(*, user, group_id: int | None = None) -> QuerySet:
    """Workers that serve at least one group of the caller's companies (optionally one group)."""
    visible = WorkerGroup.objects.filter(company_id__in=member_company_ids(user))
    if group_id is not None:
        visible = visible.filter(id=group_id)
    return (
        Worker.objects.filter(groups__in=visible)
        .distinct()
        .prefetch_related(
            Prefetch(
                "groups",
                queryset=WorkerGroup.objects.filter(company_id__in=member_company_ids(user)).select_related("company"),
                to_attr="visible_groups",
            )
        )
        .order_by("hostname")
    )


def worker_group_get(*, user, group_id: int) -> WorkerGroup:
    """One of the caller's groups (with capacity); another tenant's group is not found."""
    group = worker_group_list(user=user).filter(pk=group_id).first()
    if group is None:
        raise NotFound("worker group not found", path="group")
    return group


def worker_get(*, user, worker_id: int) -> Worker:
    """A worker serving one of the caller's groups; any other worker is not found."""
    worker = worker_list(user=user).filter(pk=worker_id).first()
    if worker is None:
        raise NotFound("worker not found")
    return worker
