"""Time limits and waits of attempts: when a running attempt is past saving, how long to poll."""
from __future__ import annotations

from datetime import datetime, timedelta

# Waiting for predecessors (a duplicate or early chord body) or for running steps (the saga):
# short polls first, then at most WAIT_MAX_S apart, for at most MAX_WAITS polls.
WAIT_FIRST_S = 0.05
WAIT_MAX_S = 1.0
MAX_WAITS = 600
# A running attempt this long past its step's timeout is dead even if its worker looks alive
# (Celery killed it at the hard time limit without re-queueing it).
HARD_LIMIT_GRACE_S = 10.0


def wait_countdown(retries: int) -> float:
    return min(WAIT_MAX_S, WAIT_FIRST_S * (1.5 ** retries))


def hard_time_limit(timeout_s: float) -> float:
    """Celery's hard limit for a step: the soft limit (timeout_s) plus time to record the failure."""
    return float(timeout_s) + 5.0


def attempt_expired(started_at: datetime | None, timeout_s: float | None, now: datetime) -> bool:
    """True when an attempt running since `started_at` is past its hard time limit: nobody is
    running it any more. A step without `timeout_s` never expires this way."""
    if not timeout_s or started_at is None:
        return False
    return now - started_at > timedelta(seconds=hard_time_limit(timeout_s) + HARD_LIMIT_GRACE_S)
