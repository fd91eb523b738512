"""Publishing desired artifacts to workers, after commit: load/unload broadcasts and pool growth.

Each live worker is told to hold exactly the artifacts of every *active* deployment on the groups it
serves (`flowplane_load_artifacts`, `replace=True`), so one deployment's rollout never drops
another's artifacts from a shared worker. Replies are recorded as `job_deployed` events.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any, Iterable

from django.db import transaction
from django.db.models import Max, OuterRef, Subquery

from controlplane.deployments import broadcast
from controlplane.deployments.models import (
    Artifact,
    Deployment,
    DeploymentStatus,
    EventKind,
    JobDeployment,
    JobDeploymentStatus,
    artifact_key,
)
from controlplane.deployments.services.events import deployment_event
from controlplane.fleet.models import Worker, WorkerGroup
from controlplane.fleet.selectors import group_live_concurrency

logger = logging.getLogger(__name__)


def _active_jobs():
    return JobDeployment.objects.filter(deployment__status=DeploymentStatus.ACTIVE)


def desired_artifacts(worker: Worker) -> list[dict[str, Any]]:
    """What `worker` should hold: `[{job_id: <artifact key>, digest, spec}]` of its groups' active jobs.

    The spec sent is the stored artifact of the job's digest, not the JobDeployment's copy: a hand
    edit of that copy is `spec_edited` drift, never something a worker runs. A job whose digest is
    not in the store (edited before the store existed) is left out: the worker reports it missing.
    """
    stored = Artifact.objects.filter(
        company_id=OuterRef("deployment__workflow__project__company_id"), digest=OuterRef("digest")
    ).values("spec")[:1]
    jobs = (
        _active_jobs().filter(group__in=worker.groups.all()).order_by("deployment_id", "job_id")
        .annotate(stored_spec=Subquery(stored)).values_list("deployment_id", "job_id", "digest", "stored_spec")
    )
    return [
        {"job_id": artifact_key(deployment_id, job_id), "digest": digest, "spec": spec}
        for deployment_id, job_id, digest, spec in jobs
        if spec is not None
    ]


def group_needed_replicas(group: WorkerGroup) -> int:
    """Slots the group needs: enough for its widest job to run all its shards at once.

    Not the sum over jobs: unrelated jobs do not all run at the same moment, and growing pools
    to the sum would fork a process per node of a wide graph. (The planner still *warns* when
    the sum exceeds live concurrency, as a capacity hint.)
    """
    return _active_jobs().filter(group=group).aggregate(widest=Max("replicas"))["widest"] or 0


def live_workers_of(group_ids: Iterable[int]) -> list[Worker]:
    return list(Worker.objects.live().filter(groups__id__in=list(group_ids)).distinct().order_by("hostname"))


def load_on(worker: Worker) -> dict | None:
    """Re-send a worker its full desired set (replace=True); its reply or None."""
    return broadcast.load_artifacts(worker.hostname, desired_artifacts(worker), replace=True)


def grow_pools(groups: Iterable[WorkerGroup]) -> list[dict[str, Any]]:
    """Grow live workers' pools where a group's replicas exceed its live concurrency, never a worker
    beyond `WORKER_MAX_POOL_SIZE` processes: each one holds a database connection, and a pool grown
    per apply would exhaust the server's `max_connections`.

    `DEPLOY_GROW_POOLS = False` turns this off (fixed pools, e.g. a benchmark comparing equal pools).
    """
    from django.conf import settings

    if not getattr(settings, "DEPLOY_GROW_POOLS", True):
        return []
    cap = int(settings.WORKER_MAX_POOL_SIZE)
    actions = []
    for group in groups:
        deficit = group_needed_replicas(group) - group_live_concurrency(group)
        workers = live_workers_of([group.id])
        if deficit <= 0 or not workers:
            continue
        growth = pool_growth(deficit, {w.hostname: w.concurrency for w in workers}, cap=cap)
        for hostname, n in growth.items():
            reply = broadcast.pool_grow(hostname, n)
            actions.append({"action": "pool_grow", "group": group.slug, "worker": hostname, "n": n, "reply": reply})
        short = deficit - sum(growth.values())
        if short > 0:
            actions.append({"action": "pool_capped", "group": group.slug, "missing": short, "cap": cap})
            logger.warning("deploy.pool_capped", extra={"group": group.slug, "missing": short, "cap": cap})
    return actions


def pool_growth(deficit: int, concurrency: dict[str, int], *, cap: int) -> dict[str, int]:
    """{hostname: processes to add}: `deficit` spread evenly over the workers (fewest first), none
    grown past `cap`; what does not fit is left out."""
    sizes = dict(concurrency)
    added: dict[str, int] = {}
    for _ in range(max(0, deficit)):
        room = [h for h in sorted(sizes) if sizes[h] < cap]
        if not room:
            break
        smallest = min(room, key=lambda h: (sizes[h], h))
        sizes[smallest] += 1
        added[smallest] = added.get(smallest, 0) + 1
    return added


def rollout_sync(
    *, group_ids: Iterable[int], deployment_id: int | None = None, unload_keys: Iterable[str] = (), actor_id=None
) -> dict[str, Any]:
    """Bring the live workers of `group_ids` to their desired artifacts; grow pools; record replies."""
    group_ids = sorted(set(group_ids))
    workers = live_workers_of(group_ids)
    unload_keys = sorted(set(unload_keys))
    unloaded = broadcast.unload_artifacts([w.hostname for w in workers], unload_keys) if unload_keys else {}
    replies: dict[str, dict | None] = {}
    for worker in workers:
        replies[worker.hostname] = load_on(worker)
    groups = list(WorkerGroup.objects.filter(id__in=group_ids).select_related("company"))
    grown = grow_pools(groups)
    if deployment_id is not None:
        _record_replies(deployment_id, workers, replies, actor_id)
    logger.info(
        "deploy.rollout",
        extra={"deployment_id": deployment_id, "workers": sorted(replies), "pool_grow": len(grown)},
    )
    return {"loaded": replies, "unloaded": unloaded, "pool_grow": grown}


@transaction.atomic
def _record_replies(deployment_id: int, workers: list[Worker], replies: dict, actor_id) -> None:
    deployment = Deployment.objects.filter(pk=deployment_id).first()
    if deployment is None or deployment.status != DeploymentStatus.ACTIVE:
        return
    by_group: dict[int, list[str]] = defaultdict(list)
    for worker in workers:
        for group_id in worker.groups.values_list("id", flat=True):
            by_group[group_id].append(worker.hostname)
    deployed = []
    for jd in JobDeployment.objects.filter(deployment=deployment).select_related("group"):
        key = artifact_key(deployment.pk, jd.job_id)
        expected = by_group.get(jd.group_id, [])
        acked = sorted(
            h for h in expected
            if (replies.get(h) or {}).get("ok") is True and (replies[h].get("artifacts") or {}).get(key) == jd.digest
        )
        if not acked:
            if expected:
                deployment_event(deployment, EventKind.WARNING, actor=actor_id, data={
                    "code": "not_acknowledged", "job_id": jd.job_id, "group": jd.group.slug, "workers": expected,
                    "message": "no live worker of the group acknowledged the artifact; reconcile will retry",
                })
            continue
        deployment_event(
            deployment, EventKind.JOB_DEPLOYED, actor=actor_id,
            data={"job_id": jd.job_id, "group": jd.group.slug, "digest": jd.digest, "workers": acked,
                  "missing": sorted(set(expected) - set(acked))},
        )
        if set(acked) == set(expected) and jd.status != JobDeploymentStatus.DEPLOYED:
            deployed.append(jd.pk)
    if deployed:
        JobDeployment.objects.filter(pk__in=deployed).update(status=JobDeploymentStatus.DEPLOYED)
