"""The database connection budget, checked when a plan is made.

Every web thread and every worker pool process holds a PostgreSQL connection (plus one per worker
process for its heartbeat, one for beat), and applying a plan may grow pools for its replicas
(up to WORKER_MAX_POOL_SIZE, `rollout.pool_growth`). A plan whose apply would take the fleet past
the server's `max_connections` minus `DB_CONNECTION_HEADROOM` gets a warning that says the sum,
before anyone applies it and the server starts refusing connections.
"""
from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass

from django.conf import settings
from django.db import connection

from controlplane.deployments.services.rollout import pool_growth
from controlplane.fleet.models import Worker
from pipelines.errors import Issue

CONNECTION_BUDGET = "connection_budget"


@dataclass(frozen=True)
class ConnectionBudget:
    web: int
    workers: int
    growth: int
    beat: int
    limit: int

    @property
    def total(self) -> int:
        return self.web + self.workers + self.growth + self.beat

    def issue(self) -> Issue | None:
        if self.total <= self.limit:
            return None
        return Issue("fleet", (
            f"applying this plan may hold {self.total} database connections (web {self.web}, worker pools and "
            f"heartbeats {self.workers}, pool growth for its replicas {self.growth}, beat {self.beat}) but the "
            f"server allows {self.limit} (max_connections minus DB_CONNECTION_HEADROOM); lower replicas or "
            "WORKER_MAX_POOL_SIZE, or raise max_connections"), CONNECTION_BUDGET)


def web_connections() -> int:
    """What this web tier may hold: gunicorn's processes x threads (controlplane/gunicorn_conf.py),
    or its connection limit where those settings would not start gunicorn (this process is not it)."""
    try:
        from controlplane import gunicorn_conf
    except RuntimeError:
        return int(os.environ.get("WEB_DB_CONNECTION_LIMIT") or 32)
    return gunicorn_conf.workers * gunicorn_conf.threads


def connection_budget(*, company, replicas_by_group: dict[str, int]) -> ConnectionBudget | None:
    """The budget after applying jobs needing `replicas_by_group` (slug -> widest job's replicas) on
    `company`'s groups; None where the database has no connection limit (SQLite)."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SHOW max_connections")
        max_connections = int(cursor.fetchone()[0])
    live = list(Worker.objects.live().prefetch_related("groups"))
    workers = sum(w.concurrency + 1 for w in live)
    by_group: dict[str, dict[str, int]] = defaultdict(dict)
    for worker in live:
        for group in worker.groups.all():
            if group.company_id == company.pk:
                by_group[group.slug][worker.hostname] = worker.concurrency
    growth = 0
    for slug, needed in replicas_by_group.items():
        pools = by_group.get(slug, {})
        deficit = needed - sum(pools.values())
        if pools and deficit > 0:
            growth += sum(pool_growth(deficit, pools, cap=int(settings.WORKER_MAX_POOL_SIZE)).values())
    return ConnectionBudget(web=web_connections(), workers=workers, growth=growth, beat=1,
                            limit=max_connections - int(settings.DB_CONNECTION_HEADROOM))
