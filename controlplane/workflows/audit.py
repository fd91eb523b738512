"""The workflows app's audit trail: one append-only `WorkflowAuditEvent` per operation, written by
the service that performs it, in its transaction."""
from __future__ import annotations

import logging

from controlplane.workflows.models import WorkflowAuditEvent

logger = logging.getLogger(__name__)


def audit(*, company_id: int, kind: str, user, workflow_id: int | None = None, template_id: int | None = None,
          **data) -> WorkflowAuditEvent:
    event = WorkflowAuditEvent.objects.create(
        company_id=company_id, workflow_id=workflow_id, template_id=template_id, kind=kind, data=data,
        actor=user if getattr(user, "pk", None) else None, actor_username=getattr(user, "username", "") or "",
    )
    logger.info(f"workflow.{kind}", extra={"company_id": company_id, "workflow_id": workflow_id,
                                            "template_id": template_id, "actor_id": getattr(user, "pk", None)})
    return event
