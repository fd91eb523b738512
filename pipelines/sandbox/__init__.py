"""Sandboxed jq: tenants' programs see no process environment and run within time and memory
limits.

- ``programs``: what a program becomes before it compiles (``$ENV``/``env`` shadowed, module
  directives refused) and which programs are provably cheap (``is_bounded_path``).
- ``evaluator``: the per-process evaluator subprocess (empty environment, RLIMIT_AS), spoken to
  over pipes with a deadline, killed and lazily restarted when it goes over.
- ``child``: the evaluator process itself.

``run`` is the entry point: a batch of programs on one input, one round trip, raising
``ResourceExhausted`` with the limit it hit (or a retryable ``StepFailed`` if the evaluator
process died of something else). The limits are process-wide: ``configure`` sets
them (the control plane does from its settings); a step's remaining ``timeout_s`` replaces the
default time budget when the caller passes its deadline.
"""

from __future__ import annotations

import atexit
import time
from dataclasses import dataclass, replace
from typing import Any, Sequence

from pipelines.errors import SANDBOX_CRASHED, ResourceExhausted, StepFailed
from pipelines.sandbox.evaluator import Evaluator, Exhausted
from pipelines.sandbox.programs import author_message, is_bounded_path, module_directive, sandboxed

__all__ = ["Limits", "configure", "limits", "run", "time_budget", "evaluator",
           "author_message", "is_bounded_path", "module_directive", "sandboxed"]

# Celery's soft time limit starts with the task, a little before the step's deadline is
# computed, and the failure must still be recorded after jq gives up: stop this much early.
RESERVE_FRACTION = 0.1
RESERVE_MAX_S = 0.25


@dataclass(frozen=True)
class Limits:
    """``time_budget_s``: a program's budget when its step has no ``timeout_s``;
    ``memory_mib``: the evaluator process's address-space cap."""

    time_budget_s: float = 5.0
    memory_mib: int = 256


_limits = Limits()
evaluator = Evaluator()
# A clean exit stops it too (it would also end on its own: its stdin closes, PR_SET_PDEATHSIG).
atexit.register(evaluator.close)


def configure(*, time_budget_s: float | None = None, memory_mib: int | None = None) -> Limits:
    """Set the process-wide limits (None keeps a value); returns them."""
    global _limits
    changes: dict[str, Any] = {}
    if time_budget_s is not None:
        if not time_budget_s > 0:
            raise ValueError(f"jq time budget must be > 0 seconds, got {time_budget_s!r}")
        changes["time_budget_s"] = float(time_budget_s)
    if memory_mib is not None:
        if int(memory_mib) < 64:
            raise ValueError(f"jq memory cap must be at least 64 MiB, got {memory_mib!r}")
        changes["memory_mib"] = int(memory_mib)
    _limits = replace(_limits, **changes)
    return _limits


def limits() -> Limits:
    return _limits


def time_budget(deadline_s: float | None) -> tuple[float, bool]:
    """(seconds a program may run, whether that is the step's own deadline rather than the
    default budget). ``deadline_s`` is an absolute ``time.time()`` or None."""
    if deadline_s is None:
        return _limits.time_budget_s, False
    remaining = max(0.0, deadline_s - time.time())
    return max(0.0, remaining - min(RESERVE_MAX_S, remaining * RESERVE_FRACTION)), True


def run(exprs: Sequence[tuple[str, bool]], input_text: str, *, deadline_s: float | None = None,
        stop_on_error: bool = False, path: str = "", expression: str = "") -> list[list[Any]]:
    """Evaluate raw programs ``(program, multiple)`` on one JSON input text in the sandbox:
    ``[["o", value] | ["e", message], ...]``. Raises ``ResourceExhausted`` (located at
    ``path``/``expression``) when the batch goes over its time budget or the memory cap."""
    budget_s, from_step = time_budget(deadline_s)
    cap = _limits.memory_mib
    try:
        return evaluator.run([(sandboxed(p), bool(m)) for p, m in exprs], input_text,
                             budget_s=budget_s, memory_mib=cap, stop_on_error=stop_on_error)
    except Exhausted as exc:
        if exc.limit == "time":
            source = ("what remained of the step's timeout_s; simplify the program or raise "
                      "timeout_s") if from_step else \
                "the default jq budget; simplify the program or set the step's timeout_s"
            raise ResourceExhausted(f"jq program exceeded its {budget_s:.3g}s time budget "
                                    f"({source})", limit="time", budget=round(budget_s, 3),
                                    path=path, expression=expression) from None
        if exc.limit == "crash":  # killed from outside, say: another attempt may well succeed
            raise StepFailed("the jq sandbox process died while evaluating; retrying may help",
                             retryable=True, details={"reason": SANDBOX_CRASHED, "path": path},
                             code=SANDBOX_CRASHED)
        raise ResourceExhausted(f"jq program exceeded its {cap} MiB memory cap; make it build "
                                "less data", limit="memory", budget=cap, path=path,
                                expression=expression) from None
