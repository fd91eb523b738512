"""Allow-listed `python` callables for the engine's end-to-end tests.

Workers import this module through PIPELINES_CALLABLE_MODULES (set by the tests' worker env).
"""
from __future__ import annotations

from pipelines.steps import register_callable


@register_callable("e2e.shard", pass_context=True)
def shard(ctx, **kwargs):
    """Report which shard ran, plus whatever was passed in."""
    return {"shard": ctx.shard_index, "count": ctx.shard_count, "attempt": ctx.attempt, **kwargs}


@register_callable("e2e.connect_when", pass_context=True)
def connect_when(ctx, *, flag: str, host: str, port: int, wait_s: float = 30):
    """Wait (bounded) until the file `flag` exists, then open one connection through the egress
    policy: the company's allow-list is read from the database only at that moment."""
    import os
    import time

    deadline = time.monotonic() + wait_s
    while not os.path.exists(flag):
        if time.monotonic() > deadline:
            raise TimeoutError(f"flag file {flag} did not appear within {wait_s}s")
        time.sleep(0.05)
    ctx.egress.connect(host, port, timeout=5).close()
    return {"connected": f"{host}:{port}"}
