"""Webhooks: managing a deployment's hooks (editors) and receiving deliveries (no user: the signature).

A hook is addressed by a random token (`POST /api/v1/hooks/{token}`) and signs with a secret
shown once at creation and at each rotation, stored encrypted (`catalog.crypto`). Rotation keeps the
previous secret valid until `hook_retire_previous`, so senders can switch without a gap.

A delivery is checked in this order: hook exists (404), signature and timestamp (401), body is a JSON
object (400), delivery id present (400), deployment accepts runs (409); then the delivery row is
inserted (unique per hook and delivery id: a redelivery finds it and starts nothing), a GitHub
push for another branch than the hook's is recorded as ignored, and otherwise the run starts in the
same transaction, its input the JSON body.
"""
from __future__ import annotations

import json
import logging
import secrets as token_source
import time
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone

from controlplane.catalog.crypto import decrypt, encrypt
from controlplane.core.errors import ApplicationError, Conflict, NotFound
from controlplane.deployments.models import Deployment, DeploymentStatus
from controlplane.executions.models import Execution, Trigger
from controlplane.executions.services.start import SYSTEM, execution_start
from controlplane.workflows.selectors import workflow_check_accepts_runs
from controlplane.tenancy.access import require_role
from controlplane.tenancy.models import Role
from controlplane.triggers.models import Hook, HookDelivery
from pipelines import signatures


class BadSignature(ApplicationError):
    status_code = 401
    default_code = "bad_signature"


@dataclass(frozen=True)
class Delivery:
    """What a receive did: the run (None when ignored), whether this call started it, and why not."""

    execution: Execution | None
    created: bool
    ignored: str = ""


logger = logging.getLogger(__name__)


def _new_secret() -> str:
    return "whsec_" + token_source.token_urlsafe(32)


@transaction.atomic
def hook_create(*, deployment: Deployment, user, name: str = "", branch: str = "") -> tuple[Hook, str]:
    """A new hook of `deployment` and its secret in clear (returned once, stored encrypted)."""
    require_role(user, deployment.workflow.project.company_id, Role.EDITOR, what="deployment")
    secret = _new_secret()
    hook = Hook.objects.create(deployment=deployment, token="hk_" + token_source.token_urlsafe(24), name=name[:100],
                               branch=branch, secret=encrypt(secret), created_by=user)
    return hook, secret


@transaction.atomic
def hook_rotate(*, hook: Hook, user) -> tuple[Hook, str]:
    """A new secret; the current one stays valid as `previous` until retired."""
    require_role(user, hook.deployment.workflow.project.company_id, Role.EDITOR, what="hook")
    hook = Hook.objects.select_for_update().get(pk=hook.pk)
    secret = _new_secret()
    hook.previous_secret, hook.secret, hook.rotated_at = hook.secret, encrypt(secret), timezone.now()
    hook.save(update_fields=["previous_secret", "secret", "rotated_at"])
    return hook, secret


@transaction.atomic
def hook_retire_previous(*, hook: Hook, user) -> Hook:
    """End the rotation: only the current secret is valid from now on."""
    require_role(user, hook.deployment.workflow.project.company_id, Role.EDITOR, what="hook")
    Hook.objects.filter(pk=hook.pk).update(previous_secret="")
    hook.previous_secret = ""
    return hook


@transaction.atomic
def hook_delete(*, hook: Hook, user) -> None:
    require_role(user, hook.deployment.workflow.project.company_id, Role.EDITOR, what="hook")
    hook.delete()


def _secrets(hook: Hook) -> list[str]:
    return [decrypt(s) for s in (hook.secret, hook.previous_secret) if s]


def hook_receive(*, token: str, body: bytes, headers, now: float | None = None) -> Delivery:
    """Check and accept one delivery to `token`; see the module docstring for the order of checks."""
    hook = Hook.objects.select_related("deployment__workflow").filter(token=token, enabled=True).first()
    if hook is None:
        raise NotFound("no such hook", path="token")
    github = headers.get("X-Hub-Signature-256") is not None
    if github:
        verdict = signatures.verify_github(_secrets(hook), body, headers.get("X-Hub-Signature-256"))
        delivery_id = headers.get("X-GitHub-Delivery")
    else:
        verdict = signatures.verify(_secrets(hook), body, headers.get("X-Flowplane-Signature"),
                                    headers.get("X-Flowplane-Timestamp"), now=time.time() if now is None else now)
        delivery_id = headers.get("X-Flowplane-Delivery")
    if not verdict.ok:
        raise BadSignature(verdict.message, code=verdict.code)
    try:
        payload = json.loads(body.decode("utf-8")) if body else None
    except (UnicodeDecodeError, ValueError):
        raise ApplicationError("the body is not JSON; send a JSON object", code="malformed_body") from None
    if not isinstance(payload, dict):
        raise ApplicationError("the body must be a JSON object", code="malformed_body")
    if not delivery_id or len(delivery_id) > 200:
        header = "X-GitHub-Delivery" if github else "X-Flowplane-Delivery"
        raise ApplicationError(f"send a delivery id of 1-200 characters in {header}", code="missing_delivery_id",
                               path=header)
    status = hook.deployment.status
    if status != DeploymentStatus.ACTIVE:
        code = "deployment_paused" if status == DeploymentStatus.PAUSED else "deployment_not_active"
        raise Conflict(f"deployment {hook.deployment_id} is {status}; it starts no runs", code=code)
    workflow = hook.deployment.workflow
    workflow_check_accepts_runs(workflow.status, slug=workflow.slug)  # 409 workflow_paused / _archived
    return _accept(hook, delivery_id, payload, github=github, event=headers.get("X-GitHub-Event"))


def _accept(hook: Hook, delivery_id: str, payload: dict, *, github: bool, event: str | None) -> Delivery:
    with transaction.atomic():
        try:
            with transaction.atomic():
                row = HookDelivery.objects.create(hook=hook, delivery_id=delivery_id)
        except IntegrityError:  # a redelivery: the first one's outcome stands
            first = HookDelivery.objects.select_related("execution").get(hook=hook, delivery_id=delivery_id)
            return Delivery(first.execution, False, first.ignored or "duplicate delivery")
        ignored = _ignored(hook, payload, github=github, event=event)
        if ignored:
            row.ignored = ignored
            row.save(update_fields=["ignored"])
            return Delivery(None, False, ignored)
        execution, created = execution_start(
            deployment=hook.deployment_id, input=payload, user=SYSTEM, trigger=Trigger.WEBHOOK,
            idempotency_key=f"hook:{hook.pk}:{delivery_id}",
            trigger_details={"hook": hook.pk, "delivery": delivery_id, **({"github_event": event} if github else {})},
        )
        row.execution = execution
        row.save(update_fields=["execution"])
    logger.info("hook.delivered", extra={"hook_id": hook.pk, "delivery": delivery_id, "execution_id": str(execution.pk)})
    return Delivery(execution, created)


def _ignored(hook: Hook, payload: dict, *, github: bool, event: str | None) -> str:
    if not github or not hook.branch:
        return ""
    if event == "ping":
        return "ping"
    branch = signatures.github_branch(payload)
    if branch != hook.branch:
        return f"push to {branch or payload.get('ref')!r}, not {hook.branch!r}"
    return ""
