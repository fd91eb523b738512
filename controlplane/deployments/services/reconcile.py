"""Reconcile: compare what a deployment wants with what workers report and what is stored.

Drift kinds (each a dict with a stable `id`):

    spec_edited         a managed JobDeployment whose spec no longer matches its digest (hand edit)
                        -> restore the spec from the last applied plan (or the accepted edit)
    store_missing       the artifact store has no row for the job's digest: its steps would fail
                        (`artifact_not_found`) -> store it again from the last applied plan
    store_mismatch      the stored row no longer hashes to its digest (changed in SQL): its steps
                        fail (`artifact_mismatch`) -> unresolved: the row is write-once; a database
                        owner must delete it, then reconcile stores it again
    artifact_missing    a live worker of the job's group does not hold the artifact (its steps load
                        it from the store on demand, one query per pool process)
    artifact_stale      it holds another digest           -> re-send its desired artifacts
    consumer_cancelled  a live worker configured for the group's queue no longer consumes it
                        -> `add_consumer`
    capacity_short      the group's live slots are fewer than the replicas placed on it
                        -> `pool_grow` on its live workers (unresolved when none is live)

Observations come from heartbeats (`Worker.loaded_artifacts`, `active_consumers`, `concurrency`)
and, with `probe`, from a `flowplane_status` broadcast whose replies override the stored rows.
"""
from __future__ import annotations

import logging
from functools import partial
from typing import Any

from django.conf import settings
from django.db import transaction

from controlplane.core.errors import ApplicationError, Conflict
from controlplane.deployments import broadcast
from controlplane.deployments.models import (
    Artifact,
    Deployment,
    DeploymentEvent,
    DeploymentStatus,
    EventKind,
    JobDeployment,
    artifact_key,
)
from controlplane.deployments.selectors import last_applied_plan
from controlplane.deployments.services.artifacts import artifacts_store
from controlplane.deployments.services.events import deployment_event
from controlplane.deployments.services.rollout import (
    group_needed_replicas,
    grow_pools,
    live_workers_of,
    load_on,
    rollout_sync,
)
from controlplane.fleet.models import Worker, WorkerGroup
from pipelines.planner import spec_digest

logger = logging.getLogger(__name__)

SPEC_EDITED, ARTIFACT_MISSING, ARTIFACT_STALE = "spec_edited", "artifact_missing", "artifact_stale"
CONSUMER_CANCELLED, CAPACITY_SHORT = "consumer_cancelled", "capacity_short"
STORE_MISSING, STORE_MISMATCH = "store_missing", "store_mismatch"
DRIFT_KINDS = (SPEC_EDITED, ARTIFACT_MISSING, ARTIFACT_STALE, CONSUMER_CANCELLED, CAPACITY_SHORT, STORE_MISSING,
               STORE_MISMATCH)
RECONCILE_TASK = "flowplane.reconcile_all"


def drift_id(kind: str, *, group: str = "", job_id: str = "", worker: str = "") -> str:
    return f"{kind}:{group}:{job_id}:{worker}"


def _drift(kind: str, **fields) -> dict[str, Any]:
    return {"id": drift_id(kind, group=fields.get("group", ""), job_id=fields.get("job_id", ""),
                           worker=fields.get("worker", "")), "kind": kind, **fields}


def _observe(workers: list[Worker], probe: bool) -> dict[str, dict]:
    """Per hostname: loaded artifacts, queues, active consumers, concurrency (probe replies win)."""
    seen = {
        w.hostname: {"loaded": dict(w.loaded_artifacts or {}), "queues": list(w.queues or []),
                     "consumers": list(w.active_consumers or []), "concurrency": w.concurrency, "source": "heartbeat"}
        for w in workers
    }
    if probe and workers:
        for hostname, reply in broadcast.worker_status([w.hostname for w in workers]).items():
            if hostname not in seen or not isinstance(reply.get("loaded_artifacts"), dict):
                continue
            entry = seen[hostname]
            entry["loaded"] = reply["loaded_artifacts"]
            entry["source"] = "probe"
            if isinstance(reply.get("queues"), list):
                entry["queues"] = reply["queues"]
            if isinstance(reply.get("active_consumers"), list):
                entry["consumers"] = reply["active_consumers"]
            if isinstance(reply.get("concurrency"), int):
                entry["concurrency"] = reply["concurrency"]
    return seen


def deployment_drift(deployment: Deployment, *, probe: bool = True) -> list[dict[str, Any]]:
    """Every drift of an active deployment, sorted by id (no writes)."""
    if deployment.status != DeploymentStatus.ACTIVE:
        return []
    jobs = list(JobDeployment.objects.filter(deployment=deployment).select_related("group__company"))
    groups = {jd.group_id: jd.group for jd in jobs}
    members = {gid: live_workers_of([gid]) for gid in groups}
    workers = {w.hostname: w for ws in members.values() for w in ws}
    seen = _observe(list(workers.values()), probe)
    drift: list[dict[str, Any]] = []
    company_ids = {jd.group.company_id for jd in jobs}  # a deployment's groups are its company's
    stored = dict(Artifact.objects.filter(company_id__in=company_ids, digest__in={jd.digest for jd in jobs})
                  .values_list("digest", "spec"))
    for jd in jobs:
        actual = spec_digest(jd.spec)
        if actual != jd.digest:
            drift.append(_drift(SPEC_EDITED, job_id=jd.job_id, group=jd.group.slug, expected=jd.digest, actual=actual))
        if jd.digest not in stored:
            drift.append(_drift(STORE_MISSING, job_id=jd.job_id, group=jd.group.slug, expected=jd.digest))
        elif spec_digest(stored[jd.digest]) != jd.digest:
            drift.append(_drift(STORE_MISMATCH, job_id=jd.job_id, group=jd.group.slug, expected=jd.digest,
                                actual=spec_digest(stored[jd.digest])))
        key = artifact_key(deployment.pk, jd.job_id)
        for worker in members[jd.group_id]:
            held = seen[worker.hostname]["loaded"].get(key)
            if held is None:
                drift.append(_drift(ARTIFACT_MISSING, job_id=jd.job_id, group=jd.group.slug, worker=worker.hostname,
                                    expected=jd.digest))
            elif held != jd.digest:
                drift.append(_drift(ARTIFACT_STALE, job_id=jd.job_id, group=jd.group.slug, worker=worker.hostname,
                                    expected=jd.digest, actual=held))
    for gid, group in groups.items():
        queue = group.queue_name
        slots = 0
        for worker in members[gid]:
            state = seen[worker.hostname]
            if queue not in state["consumers"]:
                drift.append(_drift(CONSUMER_CANCELLED, group=group.slug, worker=worker.hostname, queue=queue))
            else:
                slots += state["concurrency"]
        needed = group_needed_replicas(group)
        if needed > slots:
            drift.append(_drift(CAPACITY_SHORT, group=group.slug, needed=needed, live_slots=slots,
                                live_workers=len(members[gid])))
    return sorted(drift, key=lambda d: d["id"])


def _restore_source(deployment: Deployment, jd: JobDeployment) -> dict | None:
    """The spec whose digest is the stored one: from the last applied plan, else an accepted edit."""
    plan = last_applied_plan(deployment)
    for job in (plan.plan["jobs"] if plan else []):
        if job["job_id"] == jd.job_id and job["digest"] == jd.digest:
            return job["spec"]
    accepted = DeploymentEvent.objects.filter(
        deployment=deployment, kind=EventKind.DRIFT_ACCEPTED, data__job_id=jd.job_id, data__digest=jd.digest
    ).order_by("-id").first()
    return accepted.data.get("spec") if accepted else None


def deployment_reconcile(*, deployment: Deployment, dry_run: bool = True, user=None, probe: bool = True) -> dict:
    """Detect drift (a `drift_detected` event each); unless `dry_run`, converge and record `reconciled`.

    Returns `{deployment, dry_run, drift: [...], actions: [...]}`; worker-side actions run after commit.
    """
    if deployment.status != DeploymentStatus.ACTIVE:
        raise Conflict(f"deployment {deployment.pk} is {deployment.status}; only an active deployment is reconciled",
                       code="not_active", path="status")
    drift = deployment_drift(deployment, probe=probe)
    actions: list[dict[str, Any]] = []
    with transaction.atomic():
        deployment = Deployment.objects.select_for_update().get(pk=deployment.pk)
        for item in drift:
            deployment_event(deployment, EventKind.DRIFT_DETECTED, actor=user, data={**item, "dry_run": dry_run})
        if dry_run or not drift:
            return {"deployment": deployment.pk, "dry_run": dry_run, "drift": drift, "actions": actions}
        reload_workers: set[str] = set()
        for item in drift:
            if item["kind"] == SPEC_EDITED:
                jd = JobDeployment.objects.select_for_update().get(deployment=deployment, job_id=item["job_id"])
                spec = _restore_source(deployment, jd)
                if spec is None:
                    actions.append({"drift": item["id"], "action": "restore_spec", "ok": False,
                                    "detail": "no applied spec with the stored digest; plan and apply again"})
                    continue
                jd.spec = spec
                jd.save(update_fields=["spec", "updated_at"])
                actions.append({"drift": item["id"], "action": "restore_spec", "ok": True})
            elif item["kind"] == STORE_MISSING:
                jd = JobDeployment.objects.get(deployment=deployment, job_id=item["job_id"])
                spec = jd.spec if spec_digest(jd.spec) == jd.digest else _restore_source(deployment, jd)
                if spec is not None:
                    artifacts_store(company_id=deployment.workflow.project.company_id,
                                    jobs=[{"job_id": jd.job_id, "digest": jd.digest, "spec": spec}])
                actions.append({"drift": item["id"], "action": "store_artifact", "ok": spec is not None,
                                **({} if spec is not None else
                                   {"detail": "no applied spec with the stored digest; plan and apply again"})})
            elif item["kind"] == STORE_MISMATCH:
                actions.append({"drift": item["id"], "action": "store_artifact", "ok": False,
                                "detail": "the stored artifact was changed in the database and is write-once; "
                                          "delete the row as the database owner, then reconcile stores it again"})
            elif item["kind"] in (ARTIFACT_MISSING, ARTIFACT_STALE):
                reload_workers.add(item["worker"])
            elif item["kind"] == CONSUMER_CANCELLED:
                actions.append({"drift": item["id"], "action": "add_consumer", "worker": item["worker"],
                                "queue": item["queue"]})
            elif item["kind"] == CAPACITY_SHORT:
                ok = item["live_workers"] > 0
                actions.append({"drift": item["id"], "action": "pool_grow", "group": item["group"], "ok": ok,
                                **({} if ok else {"detail": "no live worker in the group; start one"})})
        for hostname in sorted(reload_workers):
            actions.append({"drift": [d["id"] for d in drift if d.get("worker") == hostname
                                      and d["kind"] in (ARTIFACT_MISSING, ARTIFACT_STALE)],
                            "action": "load_artifacts", "worker": hostname})
        transaction.on_commit(partial(_converge, deployment.pk, drift, actions, getattr(user, "pk", None)))
    return {"deployment": deployment.pk, "dry_run": dry_run, "drift": drift, "actions": actions}


def _converge(deployment_id: int, drift: list[dict], actions: list[dict], actor_id) -> None:
    """Worker-side convergence after commit, then the `reconciled` event with what each action got."""
    deployment = Deployment.objects.select_related("workflow__project__company").get(pk=deployment_id)
    company_id = deployment.workflow.project.company_id
    for action in actions:
        if action["action"] == "load_artifacts":
            worker = Worker.objects.filter(hostname=action["worker"]).first()
            reply = load_on(worker) if worker else None
            action["ok"] = bool(reply and reply.get("ok") is True)
        elif action["action"] == "add_consumer":
            reply = broadcast.add_consumer(action["worker"], action["queue"])
            action["ok"] = bool(reply and "ok" in reply)
    for action in actions:
        if action["action"] == "pool_grow" and action.get("ok"):
            group = WorkerGroup.objects.get(company_id=company_id, slug=action["group"])
            action["result"] = grow_pools([group])
    fixed = sorted({d for a in actions if a.get("ok") for d in ([a["drift"]] if isinstance(a["drift"], str) else a["drift"])})
    with transaction.atomic():
        deployment_event(deployment, EventKind.RECONCILED, actor=actor_id, data={
            "drift": [d["id"] for d in drift], "fixed": fixed,
            "unresolved": sorted({d["id"] for d in drift} - set(fixed)),
            "actions": [{k: v for k, v in a.items() if k != "result"} for a in actions],
        })
    logger.info("deploy.reconciled", extra={"deployment_id": deployment_id, "fixed": len(fixed)})


@transaction.atomic
def drift_accept(*, deployment: Deployment, drift: dict | str, user=None) -> dict:
    """Keep a drift instead of reverting it, recorded as `drift_accepted`.

    For `spec_edited` the edited spec becomes the desired one (digest updated, workers told, revision
    bumped so older plans are stale). Other kinds are recorded as accepted.
    """
    item = {"id": drift} if isinstance(drift, str) else dict(drift or {})
    if "kind" not in item and isinstance(item.get("id"), str):
        kind, _, rest = item["id"].partition(":")
        group, job_id, worker = (rest.split(":", 2) + ["", "", ""])[:3]
        item.update(kind=kind, group=group, job_id=job_id, worker=worker)
    if item.get("kind") not in DRIFT_KINDS:
        raise ApplicationError(f"unknown drift kind {item.get('kind')!r}; one of {', '.join(DRIFT_KINDS)}",
                               path="drift.kind")
    deployment = Deployment.objects.select_for_update().get(pk=deployment.pk)
    data: dict[str, Any] = {"drift": item, "kind": item["kind"]}
    if item["kind"] == SPEC_EDITED:
        jd = JobDeployment.objects.select_for_update().filter(deployment=deployment, job_id=item.get("job_id")).first()
        if jd is None:
            raise ApplicationError(f"job {item.get('job_id')!r} is not part of this deployment", code="no_such_drift",
                                   path="drift.job_id")
        digest = spec_digest(jd.spec)
        if digest == jd.digest:
            raise Conflict(f"job {jd.job_id!r} matches its digest; there is no edit to accept", code="no_such_drift",
                           path="drift.job_id")
        data.update(job_id=jd.job_id, previous_digest=jd.digest, digest=digest, spec=jd.spec)
        artifacts_store(company_id=deployment.workflow.project.company_id,
                        jobs=[{"job_id": jd.job_id, "digest": digest, "spec": jd.spec}])
        jd.digest = digest
        jd.save(update_fields=["digest", "updated_at"])
        deployment.revision += 1
        deployment.save(update_fields=["revision", "updated_at"])
        transaction.on_commit(partial(rollout_sync, group_ids=[jd.group_id], deployment_id=deployment.pk,
                                      actor_id=getattr(user, "pk", None)))
    event = deployment_event(deployment, EventKind.DRIFT_ACCEPTED, actor=user, data=data)
    return {"event": event.pk, **data}


def reconcile_all(*, probe: bool = True) -> dict[str, Any]:
    """The periodic reconcile: every active deployment with auto_reconcile that is not pinned."""
    results = {}
    for deployment in Deployment.objects.filter(status=DeploymentStatus.ACTIVE, auto_reconcile=True, pinned=False):
        try:
            report = deployment_reconcile(deployment=deployment, dry_run=False, user=None, probe=probe)
            results[deployment.pk] = len(report["drift"])
        except Exception:  # one broken deployment must not stop the others
            logger.exception("deploy.reconcile_failed", extra={"deployment_id": deployment.pk})
            results[deployment.pk] = None
    return {"reconciled": len(results), "drift": results}


def reconcile_interval_s() -> int:
    return int(getattr(settings, "DEPLOY_RECONCILE_INTERVAL_S", 60))


@transaction.atomic
def reconcile_schedule_ensure(*, every_s: int | None = None):
    """Create or refresh the django-celery-beat PeriodicTask that runs `reconcile_all`."""
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    schedule, _ = IntervalSchedule.objects.get_or_create(every=every_s or reconcile_interval_s(),
                                                         period=IntervalSchedule.SECONDS)
    task, _ = PeriodicTask.objects.update_or_create(
        name=RECONCILE_TASK,
        defaults={"task": RECONCILE_TASK, "interval": schedule, "enabled": True,
                  "description": "Reconcile every active, unpinned deployment with auto_reconcile on."},
    )
    return task


