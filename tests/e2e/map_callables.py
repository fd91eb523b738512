"""Allow-listed `python` callables of the map end-to-end tests (tests/e2e/test_map.py).

Workers import this module through PIPELINES_CALLABLE_MODULES (the map tests' worker env); the
test process imports it too, since planning validates callable names.
"""
from __future__ import annotations

import time

from pipelines.errors import StepFailed
from pipelines.steps import register_callable


@register_callable("e2e.map_item", pass_context=True)
def map_item(ctx, *, item, index, sleep_s: float = 0.0, fail_once: list | None = None,
             fail_always: list | None = None, hold_flag: str | None = None):
    """Echo the item with its index and shard, after `sleep_s`; item indices in `fail_once` fail
    their first attempt (retryable), those in `fail_always` every attempt (not retryable); while
    the file `hold_flag` does not exist, the item waits for it (bounded), for a kill -9 test."""
    if hold_flag and index == 0 and ctx.attempt == 1:
        import os

        deadline = time.monotonic() + 30
        while not os.path.exists(hold_flag) and time.monotonic() < deadline:
            time.sleep(0.05)
    if sleep_s:
        time.sleep(sleep_s)
    if index in (fail_always or ()):
        raise StepFailed(f"item {index} fails for good", retryable=False, details={"index": index})
    if index in (fail_once or ()) and ctx.attempt == 1:
        raise StepFailed(f"item {index} fails its first attempt", retryable=True, details={"index": index})
    return {"item": item, "index": index, "shard": ctx.shard_index, "count": ctx.shard_count,
            "attempt": ctx.attempt, "key": ctx.idempotency_key}
