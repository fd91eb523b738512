"""The one writer of `DeploymentEvent`s (append-only)."""
from __future__ import annotations

from typing import Any

from controlplane.deployments.models import Deployment, DeploymentEvent


def event_record(
    *, kind: str, workflow_id: int, environment: str, deployment: Deployment | None = None, actor=None,
    data: dict[str, Any] | None = None,
) -> DeploymentEvent:
    actor_id = getattr(actor, "pk", actor)
    return DeploymentEvent.objects.create(
        deployment=deployment,
        workflow_id=workflow_id,
        environment=environment,
        kind=kind,
        actor_id=actor_id,
        data=data or {},
    )


def deployment_event(deployment: Deployment, kind: str, *, actor=None, data: dict | None = None) -> DeploymentEvent:
    return event_record(
        kind=kind,
        workflow_id=deployment.workflow_id,
        environment=deployment.environment,
        deployment=deployment,
        actor=actor,
        data=data,
    )
