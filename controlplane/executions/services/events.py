"""Appending events: the event store's writers, now thin names over `controlplane.executions.store`.

Race-free by construction: the caller holds the execution row locked (`locked_execution`), so
two appenders of one execution serialize on that lock and the numbers are dense (1, 2, 3 ...);
the unique (execution, seq) constraint is the backstop. Each goes through `store_write`, the one
writer, so the event lands in the same statement (PostgreSQL) or transaction as its change.
"""
from __future__ import annotations

from typing import Any, Sequence

from controlplane.executions.models import EventType, Execution, ExecutionEvent, ExecutionStatus, StepRun
from controlplane.executions.store import (  # noqa: F401  (re-exported: start and the tests import them here)
    locked_execution,
    store_write,
)


def event_append(
    *, execution: Execution, type: str, data: dict[str, Any] | None = None, update_fields: Sequence[str] = ()
) -> ExecutionEvent:
    """Append one event; `execution` must have been loaded with `locked_execution`. The execution's
    `update_fields` (already set on the instance) are saved in the same statement."""
    return store_write(execution=execution, events=[(type, data)], execution_fields=update_fields)[0]


def events_append(
    *, execution: Execution, events: list[tuple[str, dict[str, Any] | None]], update_fields: Sequence[str] = ()
) -> list[ExecutionEvent]:
    """Append several events in order; `execution` must be locked (see `event_append`)."""
    return store_write(execution=execution, events=events, execution_fields=update_fields)


def events_append_with_run(
    *, execution: Execution, run: StepRun, events: list[tuple[str, dict[str, Any] | None]], completed: bool
) -> list[ExecutionEvent]:
    """Insert the unsaved attempt `run` together with its events. `completed`: the last event is
    the attempt's completion, whose seq becomes `run.completed_seq`."""
    return store_write(execution=execution, events=events, insert=run, completes=run if completed else None)


def events_append_with_run_if_unchanged(
    *, execution: Execution, run: StepRun, events: list[tuple[str, dict[str, Any] | None]], completion: int,
    expected_seq: int, update_fields: Sequence[str] = (),
) -> list[ExecutionEvent] | None:
    """`events_append_with_run` for a run read without its lock: one statement, applied only if
    the run is still running at `expected_seq` (see `store_write`); None when it was not."""
    return store_write(execution=execution, events=events, insert=run, completes=run, completion=completion,
                       execution_fields=update_fields, expect_seq=expected_seq)


def was_cancelled(execution: Execution) -> bool:
    """Whether the run was cancelled: `cancelled`, or compensating for a cancel that asked for it."""
    if execution.status == ExecutionStatus.CANCELLED:
        return True
    return (execution.status == ExecutionStatus.COMPENSATING
            and execution.events.filter(type=EventType.EXECUTION_CANCELLED).exists())
