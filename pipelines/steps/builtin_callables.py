"""A few allow-listed callables for the ``python`` step, useful in demos and tests."""

from __future__ import annotations

import time
from typing import Any

from pipelines.steps.python import register_callable

MAX_SLEEP_S = 60.0


@register_callable("echo")
def echo(**kwargs: Any) -> dict[str, Any]:
    """Return the keyword arguments unchanged."""
    return kwargs


@register_callable("add")
def add(values: list) -> float | int:
    """Sum a list of numbers."""
    if not isinstance(values, list) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
    ):
        raise ValueError("add needs values: a list of numbers")
    return sum(values)


@register_callable("sleep")
def sleep(seconds: float = 0.0) -> dict[str, float]:
    """Sleep up to MAX_SLEEP_S seconds; longer waits belong to the ``delay`` step."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not (
        0 <= seconds <= MAX_SLEEP_S
    ):
        raise ValueError(f"sleep needs seconds between 0 and {MAX_SLEEP_S:g}")
    time.sleep(seconds)
    return {"slept_s": seconds}
