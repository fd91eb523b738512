"""The event store's one writer: append an event with the execution's next sequence number.

Race-free by construction: the caller holds the execution row locked (`locked_execution`), so
two appenders of one execution serialize on that lock and the numbers are dense (1, 2, 3 ...);
the unique (execution, seq) constraint is the backstop. The event is written in the same
transaction as the state change it describes, so the store never disagrees with the rows.

Every step appends events inside its claim and record transactions, so this is the engine's
hottest write: on PostgreSQL the counter bump and the insert are one statement.
"""
from __future__ import annotations

import json
import logging
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.utils import timezone

from controlplane.executions.models import Execution, ExecutionEvent
from controlplane.executions.services.state import cached_pinned_graph, pinned_graph

logger = logging.getLogger(__name__)


def locked_execution(execution_id) -> Execution:
    """The execution row, locked until the surrounding transaction ends.

    The pinned graph and canvas are not re-read: the graph comes from the process's cache of
    pinned graphs (it never changes once the run started) and the canvas loads if touched.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("locked_execution must run inside transaction.atomic")
    cached = cached_pinned_graph(execution_id)
    if cached is not None:
        execution = Execution.objects.select_for_update().defer("graph", "canvas").get(id=execution_id)
        execution.graph = cached.raw
    else:  # first time this process sees the run: the lock's query brings the graph along
        execution = Execution.objects.select_for_update().defer("canvas").get(id=execution_id)
        pinned_graph(execution.pk, execution.graph)
    return execution


_APPEND_SQL = (
    "WITH bumped AS ("
    " UPDATE {execution} SET event_seq = event_seq + 1 WHERE id = %s RETURNING event_seq)"
    " INSERT INTO {event} (execution_id, seq, type, data, created_at)"
    " SELECT %s, bumped.event_seq, %s, %s::jsonb, %s FROM bumped RETURNING id, seq"
).format(execution=Execution._meta.db_table, event=ExecutionEvent._meta.db_table)


def event_append(*, execution: Execution, type: str, data: dict[str, Any] | None = None) -> ExecutionEvent:
    """Append one event; `execution` must have been loaded with `locked_execution`."""
    data = data or {}
    created_at = timezone.now()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                _APPEND_SQL,
                [execution.pk, execution.pk, type, json.dumps(data, cls=DjangoJSONEncoder), created_at],
            )
            event_id, seq = cursor.fetchone()
        execution.event_seq = seq
        event = ExecutionEvent(id=event_id, execution=execution, seq=seq, type=type, data=data, created_at=created_at)
    else:
        execution.event_seq += 1
        Execution.objects.filter(pk=execution.pk).update(event_seq=execution.event_seq)
        event = ExecutionEvent.objects.create(
            execution=execution, seq=execution.event_seq, type=type, data=data, created_at=created_at
        )
    logger.info(type, extra={"execution_id": str(execution.pk), "seq": event.seq, **_log_fields(data)})
    return event


def events_append(*, execution: Execution, events: list[tuple[str, dict[str, Any]]]) -> list[ExecutionEvent]:
    """Append several events in order (one statement on PostgreSQL); `execution` must be locked."""
    if connection.vendor != "postgresql" or len(events) == 1:
        return [event_append(execution=execution, type=type, data=data) for type, data in events]
    created_at = timezone.now()
    values = ", ".join(["(%s, %s, %s)"] * len(events))
    params: list[Any] = [len(events), execution.pk, execution.pk, len(events), created_at]
    for index, (type, data) in enumerate(events, start=1):
        params += [index, type, json.dumps(data or {}, cls=DjangoJSONEncoder)]
    sql = (
        f"WITH bumped AS (UPDATE {Execution._meta.db_table} SET event_seq = event_seq + %s WHERE id = %s"
        " RETURNING event_seq)"
        f" INSERT INTO {ExecutionEvent._meta.db_table} (execution_id, seq, type, data, created_at)"
        " SELECT %s, bumped.event_seq - %s + v.ord, v.type, v.data::jsonb, %s"
        f" FROM bumped, (VALUES {values}) AS v(ord, type, data) RETURNING id, seq"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        ids = dict((seq, event_id) for event_id, seq in cursor.fetchall())
    first = min(ids)
    execution.event_seq = max(ids)
    out = []
    for offset, (type, data) in enumerate(events):
        seq = first + offset
        out.append(ExecutionEvent(id=ids[seq], execution=execution, seq=seq, type=type, data=data or {},
                                  created_at=created_at))
        logger.info(type, extra={"execution_id": str(execution.pk), "seq": seq, **_log_fields(data)})
    return out


def _log_fields(data: dict[str, Any] | None) -> dict[str, Any]:
    data = data or {}
    return {key: data[key] for key in ("node_id", "shard", "attempt") if key in data}
