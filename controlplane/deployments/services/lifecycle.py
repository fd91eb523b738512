"""Pause, resume and undeploy: artifacts leave (or return to) the workers; history stays."""
from __future__ import annotations

from functools import partial

from django.db import transaction

from controlplane.deployments import broadcast
from controlplane.core.errors import Conflict
from controlplane.deployments.models import (
    Deployment,
    DeploymentStatus,
    EventKind,
    JobDeployment,
    JobDeploymentStatus,
    artifact_key,
)
from controlplane.deployments.services.events import deployment_event
from controlplane.deployments.services.rollout import live_workers_of, rollout_sync
from controlplane.triggers.services import triggers_remove, triggers_set_enabled


def _locked(deployment: Deployment) -> Deployment:
    return Deployment.objects.select_for_update().select_related("workflow__project", "version").get(pk=deployment.pk)


def _unload_after_commit(group_ids: list[int], keys: list[str]) -> None:
    def run():
        hostnames = [w.hostname for w in live_workers_of(group_ids)]
        broadcast.unload_artifacts(hostnames, keys)

    if keys:
        transaction.on_commit(run)


@transaction.atomic
def deployment_pause(*, deployment: Deployment, user=None) -> Deployment:
    """Stop new executions and unload the artifacts; resume brings both back."""
    deployment = _locked(deployment)
    if deployment.status != DeploymentStatus.ACTIVE:
        raise Conflict(f"deployment {deployment.pk} is {deployment.status}; only an active deployment can be paused",
                       code="not_active", path="status")
    jobs = list(JobDeployment.objects.filter(deployment=deployment))
    deployment.status = DeploymentStatus.PAUSED
    deployment.revision += 1
    deployment.save(update_fields=["status", "revision", "updated_at"])
    JobDeployment.objects.filter(deployment=deployment).update(status=JobDeploymentStatus.UNLOADED)
    deployment_event(deployment, EventKind.PAUSED, actor=user, data={"revision": deployment.revision})
    triggers_set_enabled(deployment=deployment, enabled=False)
    _unload_after_commit(sorted({jd.group_id for jd in jobs}), [artifact_key(deployment.pk, jd.job_id) for jd in jobs])
    return deployment


@transaction.atomic
def deployment_resume(*, deployment: Deployment, user=None) -> Deployment:
    """Resume a paused deployment, or unpin a rolled-back one; automatic reconcile comes back on."""
    deployment = _locked(deployment)
    if deployment.status == DeploymentStatus.PAUSED:
        deployment.status = DeploymentStatus.ACTIVE
    elif not (deployment.status == DeploymentStatus.ACTIVE and (deployment.pinned or not deployment.auto_reconcile)):
        raise Conflict(f"deployment {deployment.pk} is {deployment.status} and not pinned; nothing to resume",
                       code="not_paused", path="status")
    deployment.pinned, deployment.auto_reconcile = False, True
    deployment.revision += 1
    deployment.save(update_fields=["status", "pinned", "auto_reconcile", "revision", "updated_at"])
    deployment_event(deployment, EventKind.RESUMED, actor=user, data={"revision": deployment.revision})
    triggers_set_enabled(deployment=deployment, enabled=True)
    group_ids = sorted(set(JobDeployment.objects.filter(deployment=deployment).values_list("group_id", flat=True)))
    transaction.on_commit(partial(rollout_sync, group_ids=group_ids, deployment_id=deployment.pk,
                                  actor_id=getattr(user, "pk", None)))
    return deployment


@transaction.atomic
def deployment_undeploy(*, deployment: Deployment, user=None) -> Deployment:
    """Remove the artifacts for good; executions are refused; the row, plans and events stay."""
    deployment = _locked(deployment)
    if deployment.status not in (DeploymentStatus.ACTIVE, DeploymentStatus.PAUSED):
        raise Conflict(f"deployment {deployment.pk} is {deployment.status}; nothing to undeploy",
                       code="not_deployed", path="status")
    jobs = list(JobDeployment.objects.filter(deployment=deployment).select_related("group"))
    deployment.status = DeploymentStatus.UNDEPLOYED
    deployment.revision += 1
    deployment.save(update_fields=["status", "revision", "updated_at"])
    deployment_event(deployment, EventKind.UNDEPLOYED, actor=user, data={
        "revision": deployment.revision,
        "jobs": [{"job_id": jd.job_id, "group": jd.group.slug, "digest": jd.digest} for jd in jobs],
    })
    JobDeployment.objects.filter(deployment=deployment).delete()
    triggers_remove(deployment=deployment)
    _unload_after_commit(sorted({jd.group_id for jd in jobs}), [artifact_key(deployment.pk, jd.job_id) for jd in jobs])
    return deployment
