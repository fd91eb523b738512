"""Allow-listed `python` callables for the engine's end-to-end tests.

Workers import this module through PIPELINES_CALLABLE_MODULES (set by the tests' worker env).
"""
from __future__ import annotations

from pipelines.steps import register_callable


@register_callable("e2e.shard", pass_context=True)
def shard(ctx, **kwargs):
    """Report which shard ran, plus whatever was passed in."""
    return {"shard": ctx.shard_index, "count": ctx.shard_count, "attempt": ctx.attempt, **kwargs}
