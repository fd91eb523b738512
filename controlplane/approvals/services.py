"""Approvals: asked by the gate handler, decided by people, expired by the sweep.

Lock order, everywhere: the run's row first (`locked_execution`), then the approval. Every writer
of an approval holds its run's lock, so a decision, a second decision, the sweep and a cancel are
serialised per run, and the decision, the step's recorded outcome and the next segment's publish
commit together (or not at all).

- `approval_gate` (the segment service's handler for `approval` nodes): the first time the run
  reaches the node, an `Approval` (pending, deadline = now + `timeout_s`) and `approval.requested`;
  the gate stays held while it is pending.
- `approval_decide`: approve records a succeeded attempt of the node whose output is the
  decision's input (validated against `input_schema`), then `gate_resolved` publishes the next
  segment; reject fails the step (a failed attempt and a dead letter, like a step that failed for
  good) and the run compensates. Not an approver: 403 (it stays pending); decided already: 409;
  a run no longer waiting (cancelled, say): 409.
- `approvals_expire` (beat's sweep): pending approvals past their deadline expire (the step fails
  and the run compensates, as for a reject); pending approvals of runs that ended are cancelled.
"""
from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from controlplane.approvals.models import Approval, ApprovalStatus, Decision
from controlplane.core.errors import ApplicationError, Conflict, PermissionDenied
from controlplane.executions.models import EventType, Execution, ExecutionStatus, TERMINAL_EXECUTION_STATUSES
from controlplane.executions.services.segments import HELD, GateOpen, gate_resolved
from controlplane.executions.services.state import template_context
from controlplane.executions.services.steps import gate_attempt_record
from controlplane.executions.store import locked_execution, store_write
from controlplane.tenancy.access import role_in
from controlplane.tenancy.models import Role
from pipelines.engine import Snapshot
from pipelines.errors import PipelineError
from pipelines.steps import get_step_type
from pipelines.steps.approval import input_issues
from pipelines.templating import render

logger = logging.getLogger(__name__)

MAX_COMMENT_CHARS = 4000


def approval_gate(execution: Execution, job: dict[str, Any], snapshot: Snapshot) -> GateOpen:
    """The gate of an `approval` node: held until a person decides (which records the node)."""
    approval = Approval.objects.filter(execution_id=execution.pk, node_id=job["id"]).first()
    if approval is None:
        _request(execution, job, snapshot)
    return GateOpen(HELD)


def _request(execution: Execution, job: dict[str, Any], snapshot: Snapshot) -> Approval:
    config = get_step_type("approval").with_defaults(job.get("config") or {})
    try:
        prompt = render(config.get("prompt") or "", template_context(execution, snapshot), path="config.prompt")
    except PipelineError as exc:  # shown to the approvers as it is: the step itself is not at fault
        prompt = f"{config.get('prompt')}\n(the prompt could not be rendered: {exc})"
    approval = Approval.objects.create(
        company_id=execution.company_id, execution=execution, node_id=job["id"],
        prompt=str(prompt)[:10_000], approvers=config.get("approvers") or {}, four_eyes=bool(config.get("four_eyes")),
        input_schema=config.get("input_schema"), requested_by_id=execution.created_by_id,
        deadline=timezone.now() + timedelta(seconds=float(config["timeout_s"])),
    )
    store_write(execution=execution, events=[(EventType.APPROVAL_REQUESTED, {
        "approval": approval.pk, "node_id": job["id"], "deadline": approval.deadline.isoformat(),
        "approvers": approval.approvers, "four_eyes": approval.four_eyes})])
    logger.info("approval.requested", extra={"execution_id": str(execution.pk), "step": job["id"]})
    return approval


def approval_why_not(approval: Approval, user, *, role: Role | None = None) -> str | None:
    """Why `user` may not decide `approval` (None: they may). `role`: their role in its company,
    when the caller read it already."""
    role = role if role is not None else role_in(user, approval.company_id)
    if role is None:
        return "you are not a member of the run's company"
    approvers = approval.approvers or {}
    named = getattr(user, "username", None) in (approvers.get("users") or [])
    by_role = any(role.at_least(Role(r)) for r in approvers.get("roles") or [])
    if not (named or by_role):
        return "you are not one of this approval's approvers"
    if approval.four_eyes and approval.requested_by_id is not None and approval.requested_by_id == user.pk:
        return "four eyes: whoever started the run may not approve it; ask another approver"
    return None


def approval_decide(*, approval: Approval, user, decision: str, comment: str = "", input: Any = None) -> Approval:
    """Approve or reject `approval` (visible to `user`: the selector 404s another tenant's)."""
    if decision not in Decision.values:
        raise ApplicationError(f"decision must be one of {', '.join(Decision.values)}", path="decision")
    if not isinstance(comment, str) or len(comment) > MAX_COMMENT_CHARS:
        raise ApplicationError(f"comment must be text of at most {MAX_COMMENT_CHARS} characters", path="comment")
    with transaction.atomic():
        execution = locked_execution(approval.execution_id)
        approval = Approval.objects.select_for_update().get(pk=approval.pk)
        if approval.status != ApprovalStatus.PENDING:
            who = f" by {approval.decided_by.username}" if approval.decided_by else ""
            raise Conflict(f"approval {approval.pk} is {approval.status} already{who}", code="already_decided")
        reason = approval_why_not(approval, user)
        if reason:
            raise PermissionDenied(reason, code="not_an_approver")
        if execution.status != ExecutionStatus.WAITING:
            raise Conflict(f"the run is {execution.status}, not waiting for this approval", code="not_waiting")
        data = {} if input is None else input
        if decision == Decision.APPROVE:
            issues = input_issues(approval.input_schema, data)
            if issues:
                raise ApplicationError(f"{issues[0].path}: {issues[0].message}", code="invalid_input",
                                       path=issues[0].path,
                                       errors=[{"path": i.path, "message": i.message, "code": i.code} for i in issues])
        now = timezone.now()
        approval.status = ApprovalStatus.APPROVED if decision == Decision.APPROVE else ApprovalStatus.REJECTED
        approval.decided_by, approval.decided_at, approval.comment = user, now, comment
        approval.input = data if decision == Decision.APPROVE else None
        approval.save(update_fields=["status", "decided_by", "decided_at", "comment", "input"])
        by = user.username
        store_write(execution=execution, events=[(EventType.APPROVAL_DECIDED, {
            "approval": approval.pk, "node_id": approval.node_id, "decision": decision, "by": by,
            "at": now.isoformat(), "comment": comment})])
        job = execution.job(approval.node_id)
        rendered = {"decision": decision, "by": by, "comment": comment}
        if decision == Decision.APPROVE:
            gate_attempt_record(execution, job, rendered=rendered, output=data, worker=by, started_at=approval.created_at)
            gate_resolved(execution.pk, approval.node_id, by=by)
        else:
            gate_attempt_record(execution, job, rendered=rendered, worker=by, started_at=approval.created_at, error={
                "message": f"rejected by {by}" + (f": {comment}" if comment else ""),
                "details": {"reason": "rejected", "approval": approval.pk, "by": by}})
    logger.info("approval.decided", extra={"execution_id": str(approval.execution_id), "step": approval.node_id,
                                           "decision": decision, "by": by})
    return approval


def approvals_expire(*, now=None) -> dict[str, int]:
    """The sweep: expire pending approvals past their deadline (their step fails, the run
    compensates) and cancel pending ones whose run ended; {"expired": n, "cancelled": m}."""
    now = now or timezone.now()
    counts = {"expired": 0, "cancelled": 0}
    due = Approval.objects.filter(status=ApprovalStatus.PENDING, deadline__lte=now).values_list("pk", flat=True)
    ended = (Approval.objects.filter(status=ApprovalStatus.PENDING, execution__status__in=TERMINAL_EXECUTION_STATUSES)
             .values_list("pk", flat=True))
    for pk in {*due[:500], *ended[:500]}:
        outcome = _expire(pk, now)
        if outcome:
            counts[outcome] += 1
    return counts


def _expire(pk: int, now) -> str | None:
    with transaction.atomic():
        execution_id = Approval.objects.filter(pk=pk).values_list("execution_id", flat=True).first()
        if execution_id is None:
            return None
        execution = locked_execution(execution_id)
        approval = Approval.objects.select_for_update().get(pk=pk)
        if approval.status != ApprovalStatus.PENDING:
            return None
        waiting = execution.status == ExecutionStatus.WAITING
        approval.status = ApprovalStatus.EXPIRED if waiting else ApprovalStatus.CANCELLED
        approval.decided_at = now
        approval.save(update_fields=["status", "decided_at"])
        store_write(execution=execution, events=[(EventType.APPROVAL_EXPIRED, {
            "approval": approval.pk, "node_id": approval.node_id, "status": approval.status,
            "deadline": approval.deadline.isoformat()})])
        if not waiting:
            return "cancelled"
        gate_attempt_record(execution, execution.job(approval.node_id), worker="timeout",
                            started_at=approval.created_at, error={
            "message": f"approval {approval.node_id!r} expired at {approval.deadline.isoformat()} without a decision",
            "details": {"reason": "timeout", "approval": approval.pk}})
    logger.warning("approval.expired", extra={"execution_id": str(execution_id), "step": approval.node_id})
    return "expired"
