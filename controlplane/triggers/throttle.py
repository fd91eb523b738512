"""The webhook receiver's throttle: deliveries per hook token, counted in the shared cache.

Django's default cache is Redis (the Celery broker's server) whenever the broker is, so every web
process counts one hook's deliveries together; the embedded default has no server and counts per
process (settings.CACHES). DRF's `SimpleRateThrottle` keeps a list of timestamps and writes it
back after reading it, so two processes receiving at once lose each other's counts. Here a window
opens with the hook's first delivery and lasts the rate's period; one atomic increment counts each
delivery in it. Over the rate: 429 with Retry-After, the seconds until the window closes.

A cache that cannot be reached lets deliveries through (logged): a throttle outage must not turn
away signed deliveries that the database can still take.
"""
from __future__ import annotations

import hashlib
import logging
import math

from django.conf import settings
from redis.exceptions import RedisError
from rest_framework.throttling import SimpleRateThrottle

logger = logging.getLogger(__name__)


class HookThrottle(SimpleRateThrottle):
    """Deliveries per hook token (`HOOK_THROTTLE_RATE`, default 120/min); over it: 429 with Retry-After."""

    scope = "hook"

    def get_rate(self):
        return settings.HOOK_THROTTLE_RATE

    def get_cache_key(self, request, view):
        # Hashed: the token comes from the URL, and any length reaches here before the 404.
        token = str(view.kwargs.get("token", "")).encode("utf-8", "surrogatepass")
        return f"throttle:hook:{hashlib.sha256(token).hexdigest()}"

    def allow_request(self, request, view):
        key, now = self.get_cache_key(request, view), self.timer()
        try:
            count, opened = self._count(key, now)
        except RedisError as exc:
            logger.warning("hook.throttle_unavailable", extra={"error": f"{type(exc).__name__}: {exc}"})
            return True
        # Clamped: a delivery that read the clock just before another opened the window.
        self.retry_after = min(self.duration, max(1, math.ceil(opened + self.duration - now)))
        return count <= self.num_requests

    def _count(self, key: str, now: float) -> tuple[int, float]:
        """This delivery's number in its window, and when the window opened."""
        for _ in range(3):
            if self.cache.add(key, 0, timeout=self.duration):
                self.cache.set(f"{key}:opened", now, timeout=self.duration)
            try:
                count = self.cache.incr(key)
            except ValueError:  # the window closed between add and incr: open the next one
                continue
            if count == 1:
                # Redis's INCR re-creates a key that expired just before it without an expiry.
                self.cache.touch(key, timeout=self.duration)
            return count, float(self.cache.get(f"{key}:opened", now))
        return 1, now

    def wait(self):
        return self.retry_after
