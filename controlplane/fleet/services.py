"""Writes of the fleet app: worker groups, and worker rows kept fresh by heartbeats.

Heartbeats come from the worker processes themselves (`workers/bootsteps.py` calls
`worker_heartbeat` directly; the worker has Django set up). The control plane sweeps stale rows to
offline with `fleet_sweep` and tells other apps through the `hooks.workers_offline` signal.
"""
from __future__ import annotations

import logging
from datetime import datetime

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError
from django.utils import timezone

from controlplane.core.errors import ApplicationError, Conflict
from controlplane.fleet import hooks
from controlplane.fleet.models import Worker, WorkerGroup, WorkerStatus, offline_threshold
from controlplane.fleet.selectors import groups_by_queue
from controlplane.tenancy.models import Company, slug_validator

logger = logging.getLogger(__name__)


@transaction.atomic
def worker_group_create(*, company: Company, slug: str, name: str = "", description: str = "") -> WorkerGroup:
    """Create a group; workers already consuming its queue join it at once."""
    try:
        slug_validator(slug)
    except ValidationError as exc:
        raise ApplicationError(f"invalid worker group slug {slug!r}: {exc.messages[0]}", path="slug") from exc
    if WorkerGroup.objects.filter(company=company, slug=slug).exists():
        raise Conflict(f"worker group {slug!r} already exists in {company.slug}", code="duplicate", path="slug")
    try:
        with transaction.atomic():
            group = WorkerGroup.objects.create(company=company, slug=slug, name=name or slug, description=description)
    except IntegrityError as exc:  # a concurrent create won the race
        raise Conflict(f"worker group {slug!r} already exists in {company.slug}", code="duplicate", path="slug") from exc
    queue = group.queue_name
    serving = [w.id for w in Worker.objects.only("id", "queues") if queue in (w.queues or [])]
    if serving:
        group.workers.add(*serving)
    logger.info("fleet.group_created", extra={"company": company.slug, "group": slug, "queue": queue})
    return group


@transaction.atomic
def worker_group_delete(*, group: WorkerGroup) -> None:
    """Delete a group; refused (409) while other records (e.g. deployed jobs) still point at it."""
    try:
        group.delete()
    except ProtectedError as exc:
        raise Conflict(
            f"worker group {group.slug!r} is still in use; undeploy what runs on it first", code="group_in_use"
        ) from exc


def _str_list(values) -> list[str]:
    return sorted({str(v) for v in (values or [])})


@transaction.atomic
def worker_heartbeat(
    *,
    hostname: str,
    queues: list[str],
    concurrency: int,
    pid: int,
    software_version: str,
    loaded_artifacts: dict | None = None,
    step_types: list[str] | None = None,
    active_consumers: list[str] | None = None,
    pool_pids: list[int] | None = None,
    process_started_at: datetime | None = None,
    now: datetime | None = None,
) -> Worker:
    """Record that `hostname` is alive and what it serves.

    Queues named `wg.<company>.<group>` of existing groups become the worker's groups; other queues
    are kept in `queues` and otherwise ignored. `active_consumers` defaults to `queues` (a reporter
    that cannot tell consumed from configured queues). `loaded_artifacts` and `step_types` left as
    None keep what was stored. `pool_pids`: the processes that run its tasks now.

    A new process under a known hostname (another pid, or another `process_started_at`: a
    restarted container often gets the same pid) is a new incarnation: `started_at` is reset, and
    unless the previous one said it stopped, the `hooks.worker_replaced` signal is sent after commit so that
    what the previous process had claimed is recovered rather than taken for running.
    """
    now = now or timezone.now()
    started = process_started_at or now
    queues = _str_list(queues)
    worker = Worker.objects.select_for_update().filter(hostname=hostname).first()
    if worker is None:
        worker = Worker(hostname=hostname, started_at=started)
    elif _new_incarnation(worker, pid=pid, process_started_at=process_started_at):
        if worker.status != WorkerStatus.STOPPED:
            transaction.on_commit(lambda: hooks.run_worker_replaced(hostname, started))
        worker.started_at = started
    worker.queues = queues
    worker.active_consumers = queues if active_consumers is None else _str_list(active_consumers)
    worker.concurrency = max(0, int(concurrency))
    worker.pid = pid
    worker.software_version = software_version[:100]
    worker.last_heartbeat = now
    worker.status = WorkerStatus.ONLINE
    if loaded_artifacts is not None:
        worker.loaded_artifacts = {str(k): str(v) for k, v in loaded_artifacts.items()}
    if step_types is not None:
        worker.step_types = _str_list(step_types)
    if pool_pids is not None:
        worker.pool_pids = sorted({int(p) for p in pool_pids})
    try:
        with transaction.atomic():
            worker.save()
    except IntegrityError:  # first heartbeat raced another one for the same hostname: update that row
        worker.pk = Worker.objects.select_for_update().get(hostname=hostname).pk
        worker.save(force_update=True)
    group_ids = [group.id for group in groups_by_queue(queues).values()]
    if set(worker.groups.values_list("id", flat=True)) != set(group_ids):
        worker.groups.set(group_ids)
    return worker


def _new_incarnation(worker: Worker, *, pid: int, process_started_at: datetime | None) -> bool:
    if worker.pid != pid:
        return True
    # Heartbeats of one process repeat its start time exactly; allow for rounding only.
    return process_started_at is not None and abs((process_started_at - worker.started_at).total_seconds()) > 1.0


@transaction.atomic
def worker_stopped(*, hostname: str) -> bool:
    """Mark a worker that shut down cleanly as stopped (its cache died with it); False if unknown."""
    updated = Worker.objects.filter(hostname=hostname).update(
        status=WorkerStatus.STOPPED, active_consumers=[], loaded_artifacts={}
    )
    if updated:
        logger.info("fleet.worker_stopped", extra={"hostname": hostname})
    return bool(updated)


def workers_mark_offline(*, now: datetime | None = None) -> list[str]:
    """Mark online workers whose heartbeat is older than WORKER_OFFLINE_AFTER_S offline.

    Returns their hostnames; after commit, the `hooks.workers_offline` signal is sent with them.
    A heartbeat that lands concurrently wins: only rows still stale at update time are changed.
    """
    now = now or timezone.now()
    cutoff = now - offline_threshold()
    with transaction.atomic():
        stale = (
            Worker.objects.select_for_update(skip_locked=True)
            .filter(status=WorkerStatus.ONLINE, last_heartbeat__lte=cutoff)
            .values_list("id", "hostname")
        )
        rows = list(stale)
        if not rows:
            return []
        Worker.objects.filter(id__in=[pk for pk, _ in rows]).update(status=WorkerStatus.OFFLINE)
        hostnames = sorted(hostname for _, hostname in rows)
        logger.warning("fleet.workers_offline", extra={"hostnames": hostnames})
        transaction.on_commit(lambda: hooks.run_workers_offline(hostnames))
    return hostnames


def fleet_sweep() -> list[str]:
    """The periodic sweep (scheduled by the engine): stale workers -> offline, hooks run."""
    return workers_mark_offline()


__all__ = [
    "fleet_sweep",
    "worker_group_create",
    "worker_group_delete",
    "worker_heartbeat",
    "worker_stopped",
    "workers_mark_offline",
]
