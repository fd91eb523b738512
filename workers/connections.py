"""Database connections in worker processes: kept across tasks, pinged only after a pause.

Django checks a reused connection with a `SELECT 1` at the start of each request when
CONN_HEALTH_CHECKS is on; Celery has no requests, so `task_prerun` plays that part. A ping per
task is one more statement than most steps' work, so it is skipped while tasks follow each other
closely: a connection that served the previous task moments ago, without an error, is taken as
healthy. After a pause (a server restart, an idle timeout), it is pinged as Django would. A
connection that breaks anyway makes the task retry (`workers.tasks`); the next `task_prerun`
then finds it broken and replaces it.
"""
from __future__ import annotations

import time

from celery.signals import task_postrun, task_prerun

# A connection idle longer than this is pinged before the next task uses it.
PING_AFTER_IDLE_S = 1.0

_last_task_end: float | None = None


@task_prerun.connect(weak=False)
def _prepare_database_connections(**kwargs) -> None:
    """Drop connections past CONN_MAX_AGE or broken (CELERY_DB_REUSE_MAX keeps Celery from closing
    all of them), and spare the ping of those that served the last task just now."""
    from django.db import close_old_connections, connections

    close_old_connections()  # marks every kept connection for a ping before its next use
    if _last_task_end is not None and time.monotonic() - _last_task_end < PING_AFTER_IDLE_S:
        for conn in connections.all(initialized_only=True):
            if conn.connection is not None:  # kept open: used without error by the previous task
                conn.health_check_done = True


@task_postrun.connect(weak=False)
def _remember_task_end(**kwargs) -> None:
    global _last_task_end
    _last_task_end = time.monotonic()
