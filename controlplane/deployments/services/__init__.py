"""Writes of the deployments app (the only code that changes deployment rows).

    plan_create(*, workflow, version, environment, placement, replicas, user) -> DeploymentPlan
    plan_apply(*, plan, user) -> Deployment
    deployment_rollback(*, deployment, version, user) -> (Deployment, DeploymentPlan)
    deployment_pause / deployment_resume / deployment_undeploy(*, deployment, user) -> Deployment
    deployment_reconcile(*, deployment, dry_run, user, probe=True) -> report
    drift_accept(*, deployment, drift, user) -> dict
    reconcile_all(), reconcile_schedule_ensure()
    artifacts_store(*, company_id, jobs) -> int       (the write-once artifact store; apply calls it)
"""
from controlplane.deployments.services.artifacts import artifacts_store
from controlplane.deployments.services.lifecycle import deployment_pause, deployment_resume, deployment_undeploy
from controlplane.deployments.services.planning import deployment_rollback, plan_apply, plan_create
from controlplane.deployments.services.reconcile import (
    DRIFT_KINDS,
    deployment_drift,
    deployment_reconcile,
    drift_accept,
    reconcile_all,
    reconcile_schedule_ensure,
)
from controlplane.deployments.services.rollout import desired_artifacts, rollout_sync

__all__ = [
    "DRIFT_KINDS",
    "artifacts_store",
    "deployment_drift",
    "deployment_pause",
    "deployment_reconcile",
    "deployment_resume",
    "deployment_rollback",
    "deployment_undeploy",
    "desired_artifacts",
    "drift_accept",
    "plan_apply",
    "plan_create",
    "reconcile_all",
    "reconcile_schedule_ensure",
    "rollout_sync",
]
