"""Allow-listed `python` callables for the engine's end-to-end tests.

Workers import this module through PIPELINES_CALLABLE_MODULES (set by the tests' worker env).
"""
from __future__ import annotations

from pipelines.steps import register_callable


@register_callable("e2e.shard", pass_context=True)
def shard(ctx, **kwargs):
    """Report which shard ran, plus whatever was passed in."""
    return {"shard": ctx.shard_index, "count": ctx.shard_count, "attempt": ctx.attempt, **kwargs}


@register_callable("e2e.spill")
def spill(value: str, fail: bool = False):
    """Everything a careless callable does with a secret: print it, log it (message, arguments,
    `extra`, an exception), and return it encoded, nested and as a key; or raise carrying it."""
    import base64
    import json
    import logging
    from urllib.parse import quote, quote_plus

    log = logging.getLogger("tests.e2e.spill")
    print(f"spill: printing {value}")
    log.warning("spill: logging %s and %r", value, base64.b64encode(value.encode()).decode(), extra={"token": value})
    try:
        raise RuntimeError(f"spill: an exception about {value!r}")
    except RuntimeError:
        log.exception("spill: caught")
    if fail:
        raise ValueError(f"refused {value!r} (base64 {base64.b64encode(value.encode()).decode()})")
    return {
        "b64": base64.b64encode(value.encode()).decode(),
        "b64url": base64.urlsafe_b64encode(value.encode()).decode().rstrip("="),
        "quoted": quote(value, safe=""),
        "plus": quote_plus(value),
        "json": json.dumps({"v": value}),
        "nested": {value: [{"deep": value}]},
    }
