"""Celery task shims of the deployments app (imported from `DeploymentsConfig.ready`)."""
from __future__ import annotations

from celery import shared_task


@shared_task(name="deployments.reconcile_all", ignore_result=True, soft_time_limit=300, time_limit=360)
def reconcile_all_task() -> dict:
    """Periodic reconcile of every active, unpinned deployment with auto_reconcile; no retries (next tick)."""
    from controlplane.deployments.services import reconcile_all

    result = reconcile_all()
    return {"reconciled": result["reconciled"]}
