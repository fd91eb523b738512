"""Writes of the egress allow-list; every change appends an `EgressAuditEvent` in the same transaction.

Who may call these is the caller's business (the API requires admin or owner); the services
validate the entry, keep it in canonical form, and record who did what, when and from where.
"""
from __future__ import annotations

import logging

from django.db import IntegrityError, transaction

from controlplane.core.errors import ApplicationError, Conflict
from controlplane.egress import selectors
from controlplane.egress.models import EgressAuditAction, EgressAuditEvent, EgressRule
from controlplane.tenancy.models import Company
from pipelines.egress import EgressRuleError, parse_rule

logger = logging.getLogger(__name__)

MAX_DESCRIPTION = 500


def _canonical(entry) -> str:
    if not isinstance(entry, str):
        raise ApplicationError("entry must be a string such as 10.0.0.0/8 or api.internal:8443", path="entry")
    try:
        return parse_rule(entry).canonical
    except EgressRuleError as exc:
        raise ApplicationError(str(exc), code="invalid_egress_rule", path="entry") from None


def _check_description(description) -> str:
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
        raise ApplicationError(f"description must be text of at most {MAX_DESCRIPTION} characters", path="description")
    return description


def _snapshot(rule: EgressRule) -> dict:
    return {"entry": rule.entry, "description": rule.description}


def _audit(*, rule: EgressRule, action: str, before: dict | None, after: dict | None, user, via: str) -> None:
    EgressAuditEvent.objects.create(
        company_id=rule.company_id, rule_id=rule.pk, action=action, before=before, after=after,
        actor=user if getattr(user, "pk", None) else None, actor_username=getattr(user, "username", "") or "",
        via=via,
    )
    logger.info(f"egress_rule.{action}", extra={"company_id": rule.company_id, "rule_id": rule.pk,
                                                 "entry": (after or before)["entry"],
                                                 "actor_id": getattr(user, "pk", None)})
    # This process sees the change at once; other workers within EGRESS_RULES_CACHE_S.
    transaction.on_commit(lambda: selectors.egress_cache_clear(rule.company_id))


def _save(rule: EgressRule) -> None:
    try:
        with transaction.atomic():
            rule.save()
    except IntegrityError:
        raise Conflict(f"the company already has an egress rule {rule.entry!r}", code="rule_exists",
                       path="entry") from None


@transaction.atomic
def egress_rule_create(*, company: Company, entry: str, description: str = "", user=None,
                       via: str = "api") -> EgressRule:
    """A new allow-list entry; `rule_exists` (409) if the company already has it (in any spelling)."""
    rule = EgressRule(company=company, entry=_canonical(entry), description=_check_description(description),
                      created_by=user if getattr(user, "pk", None) else None)
    _save(rule)
    _audit(rule=rule, action=EgressAuditAction.CREATED, before=None, after=_snapshot(rule), user=user, via=via)
    return rule


@transaction.atomic
def egress_rule_update(*, rule: EgressRule, entry: str | None = None, description: str | None = None, user=None,
                       via: str = "api") -> EgressRule:
    rule = EgressRule.objects.select_for_update().get(pk=rule.pk)
    before = _snapshot(rule)
    if entry is not None:
        rule.entry = _canonical(entry)
    if description is not None:
        rule.description = _check_description(description)
    if _snapshot(rule) == before:
        return rule  # nothing changed: nothing to audit
    _save(rule)
    _audit(rule=rule, action=EgressAuditAction.UPDATED, before=before, after=_snapshot(rule), user=user, via=via)
    return rule


@transaction.atomic
def egress_rule_delete(*, rule: EgressRule, user=None, via: str = "api") -> None:
    rule = EgressRule.objects.select_for_update().filter(pk=rule.pk).first()
    if rule is None:
        return  # deleted concurrently; that deletion was audited
    _audit(rule=rule, action=EgressAuditAction.DELETED, before=_snapshot(rule), after=None, user=user, via=via)
    rule.delete()
