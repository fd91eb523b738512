"""Reads of the egress allow-list: tenant-scoped lookups for the API, and the worker's policy.

The worker side (`company_egress_policy`) caches each company's parsed allow-list per process for
`EGRESS_RULES_CACHE_S` seconds (a TTL: other processes' changes show within it; the process that
made a change drops its own entry on commit). The deployment-wide `EGRESS_ALLOW` is added to it.
"""
from __future__ import annotations

import threading
import time

from django.conf import settings
from django.db.models import QuerySet

from controlplane.egress.models import EgressAuditEvent, EgressRule
from controlplane.tenancy.access import company_scoped, get_visible
from pipelines.egress import EgressPolicy, EgressRule as PolicyRule, EgressRuleError, parse_rule, parse_rules


def egress_rule_list(*, user, company_id=None) -> QuerySet[EgressRule]:
    return company_scoped(EgressRule.objects.select_related("created_by"), user, company_id)


def egress_rule_get(*, user, rule_id) -> EgressRule:
    return get_visible(egress_rule_list(user=user), rule_id, "egress rule")


def egress_event_list(*, user, company_id=None, rule_id=None) -> QuerySet[EgressAuditEvent]:
    queryset = company_scoped(EgressAuditEvent.objects.all(), user, company_id)
    if rule_id not in (None, ""):
        try:
            queryset = queryset.filter(rule_id=int(rule_id))
        except (TypeError, ValueError):
            return queryset.none()
    return queryset


def egress_event_get(*, user, event_id) -> EgressAuditEvent:
    return get_visible(egress_event_list(user=user), event_id, "egress audit event")


# -- the worker's view ----------------------------------------------------------------------------

_cache: dict[int, tuple[float, tuple[PolicyRule, ...]]] = {}
_cache_lock = threading.Lock()


def egress_cache_clear(company_id: int | None = None) -> None:
    with _cache_lock:
        if company_id is None:
            _cache.clear()
        else:
            _cache.pop(company_id, None)


def company_egress_rules(company_id: int) -> tuple[PolicyRule, ...]:
    """The deployment-wide entries and the company's own, parsed (cached for EGRESS_RULES_CACHE_S)."""
    ttl = float(settings.EGRESS_RULES_CACHE_S)
    now = time.monotonic()
    with _cache_lock:
        hit = _cache.get(company_id)
    if hit is not None and hit[0] > now:
        return hit[1]
    rules = list(parse_rules(settings.EGRESS_ALLOW))
    for entry in EgressRule.objects.filter(company_id=company_id).values_list("entry", flat=True):
        try:
            rules.append(parse_rule(entry))
        except EgressRuleError:
            continue  # stored by the service, so parseable; a hand-edited bad row opens nothing
    loaded = tuple(rules)
    if ttl > 0:
        with _cache_lock:
            _cache[company_id] = (now + ttl, loaded)
    return loaded


def company_egress_policy(company_id: int) -> EgressPolicy:
    """The policy a company's steps run under; its allow-list is read only when a step connects."""
    return EgressPolicy(rules=lambda: company_egress_rules(company_id))
