"""The event store's one writer: append an event with the execution's next sequence number.

Race-free by construction: the caller holds the execution row locked (`locked_execution`), so
two appenders of one execution serialize on that lock and the numbers are dense (1, 2, 3 ...);
the unique (execution, seq) constraint is the backstop. The event is written in the same
transaction as the state change it describes, so the store never disagrees with the rows.
"""
from __future__ import annotations

import logging
from typing import Any

from django.db import transaction

from controlplane.executions.models import Execution, ExecutionEvent

logger = logging.getLogger(__name__)


def locked_execution(execution_id) -> Execution:
    """The execution row, locked until the surrounding transaction ends."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("locked_execution must run inside transaction.atomic")
    return Execution.objects.select_for_update().get(id=execution_id)


def event_append(*, execution: Execution, type: str, data: dict[str, Any] | None = None) -> ExecutionEvent:
    """Append one event; `execution` must have been loaded with `locked_execution`."""
    execution.event_seq += 1
    Execution.objects.filter(pk=execution.pk).update(event_seq=execution.event_seq)
    event = ExecutionEvent.objects.create(execution=execution, seq=execution.event_seq, type=type, data=data or {})
    logger.info(type, extra={"execution_id": str(execution.pk), "seq": event.seq, **_log_fields(data)})
    return event


def _log_fields(data: dict[str, Any] | None) -> dict[str, Any]:
    data = data or {}
    return {key: data[key] for key in ("node_id", "shard", "attempt") if key in data}
