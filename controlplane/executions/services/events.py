"""The event store's one writer: append an event with the execution's next sequence number.

Race-free by construction: the caller holds the execution row locked (`locked_execution`), so
two appenders of one execution serialize on that lock and the numbers are dense (1, 2, 3 ...);
the unique (execution, seq) constraint is the backstop. The event is written in the same
transaction as the state change it describes, so the store never disagrees with the rows.

Every step appends events inside its claim and record transactions, so this is the engine's
hottest write. On PostgreSQL it is one statement: the counter bump, any other change to the
execution row (`update_fields`), the events, and (`events_append_with_run`) the step attempt
they describe. Elsewhere (SQLite, the embedded default) the same writes are separate statements.
"""
from __future__ import annotations

import json
import logging
from typing import Any, Sequence

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.utils import timezone

from controlplane.executions.models import Execution, ExecutionEvent, ExecutionStatus, StepRun
from controlplane.executions.services.rows import Columns, execution_locked_row
from controlplane.executions.services.state import cached_pinned_graph, remember_run

logger = logging.getLogger(__name__)


def locked_execution(execution_id) -> Execution:
    """The execution row, locked until the surrounding transaction ends.

    The pinned graph and canvas are not re-read: the graph comes from the process's cache of
    pinned graphs (it never changes once the run started) and the canvas loads if touched.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("locked_execution must run inside transaction.atomic")
    cached = cached_pinned_graph(execution_id)
    # First time this process sees the run: the lock's query brings the graph along.
    execution = execution_locked_row(execution_id, with_graph=cached is None)
    if cached is not None:
        execution.graph = cached.raw
    remember_run(execution)
    return execution


def event_append(
    *, execution: Execution, type: str, data: dict[str, Any] | None = None, update_fields: Sequence[str] = ()
) -> ExecutionEvent:
    """Append one event; `execution` must have been loaded with `locked_execution`. The execution's
    `update_fields` (already set on the instance) are saved in the same statement."""
    return events_append(execution=execution, events=[(type, data)], update_fields=update_fields)[0]


def events_append(
    *, execution: Execution, events: list[tuple[str, dict[str, Any] | None]], update_fields: Sequence[str] = ()
) -> list[ExecutionEvent]:
    """Append several events in order; `execution` must be locked (see `event_append`)."""
    return _append(execution, events, update_fields, run=None)


def events_append_with_run(
    *, execution: Execution, run: StepRun, events: list[tuple[str, dict[str, Any] | None]], completed: bool
) -> list[ExecutionEvent]:
    """Insert the unsaved attempt `run` together with its events (one statement on PostgreSQL).
    `completed`: the last event is the attempt's completion, whose seq becomes `run.completed_seq`."""
    if connection.vendor != "postgresql":
        appended = _append(execution, events, (), run=None)
        if completed:
            run.completed_seq = appended[-1].seq
        run.save(force_insert=True)
        return appended
    return _append(execution, events, (), run=run, completion=len(events) - 1 if completed else None)


def events_append_with_run_if_unchanged(
    *, execution: Execution, run: StepRun, events: list[tuple[str, dict[str, Any] | None]], completion: int,
    expected_seq: int, update_fields: Sequence[str] = (),
) -> list[ExecutionEvent] | None:
    """`events_append_with_run` for a run read without its lock (PostgreSQL only), `events[completion]`
    being the attempt's completion: written, with the execution's `update_fields`, in one statement
    that is its own transaction, only if the run is still running and nothing was appended since
    `expected_seq` was read. Every change to a run's step runs or status appends an event, so an
    unchanged sequence means an unchanged run; None when it changed, and then nothing was written."""
    if connection.in_atomic_block:
        raise RuntimeError("a conditional append commits by itself; call it outside transaction.atomic")
    return _append(execution, events, update_fields, run=run, completion=completion,
                   expect=(expected_seq, ExecutionStatus.RUNNING.value)) or None


def _append(execution, events, update_fields, *, run: StepRun | None, completion: int | None = None,
            expect: tuple[int, str] | None = None) -> list[ExecutionEvent]:
    created_at = timezone.now()
    events = [(type, data or {}) for type, data in events]
    if connection.vendor != "postgresql":
        execution.event_seq += len(events)
        execution.save(update_fields=["event_seq", *update_fields])
        first = execution.event_seq - len(events) + 1
        appended = ExecutionEvent.objects.bulk_create(
            [ExecutionEvent(execution=execution, seq=first + offset, type=type, data=data, created_at=created_at)
             for offset, (type, data) in enumerate(events)]
        )
    else:
        sql, params = _append_statement(execution, events, update_fields, created_at, run=run,
                                        completion=completion, expect=expect)
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
        if not rows:  # `expect` did not hold
            return []
        ids = {seq: event_id for event_id, seq, _ in rows}
        execution.event_seq = max(ids)
        first = execution.event_seq - len(events) + 1
        appended = [ExecutionEvent(id=ids[first + offset], execution=execution, seq=first + offset, type=type,
                                   data=data, created_at=created_at) for offset, (type, data) in enumerate(events)]
        if run is not None:
            run.pk = rows[0][2]
            run._state.adding, run._state.db = False, connection.alias
            if completion is not None:
                run.completed_seq = first + completion
    for event in appended:
        logger.info(event.type, extra={"execution_id": str(execution.pk), "seq": event.seq, **_log_fields(event.data)})
    return appended


# The columns an INSERT writes (their SQL list is built once per database, see `Columns`).
_RUN_INSERT = Columns(StepRun, [f.attname for f in StepRun._meta.concrete_fields if not f.primary_key])
_EXECUTION_INSERT = Columns(Execution, [f.attname for f in Execution._meta.concrete_fields])


def _append_statement(execution, events, update_fields, created_at, *, run, completion, expect=None):
    """WITH bumped AS (UPDATE execution ... RETURNING event_seq), [attempt AS (INSERT step run)]
    INSERT events ... RETURNING id, seq, attempt id. With `expect` (event_seq, status) the update
    applies only to a row still in that state, and the inserts take their rows from it: no row,
    no writes."""
    quote = connection.ops.quote_name
    sets = ["event_seq = event_seq + %s"]
    params: list[Any] = [len(events)]
    for name in update_fields:
        field = Execution._meta.get_field(name)
        sets.append(f"{quote(field.column)} = %s")
        params.append(field.get_db_prep_save(getattr(execution, field.attname), connection))
    params.append(execution.pk)
    condition = ""
    if expect is not None:
        condition = " AND event_seq = %s AND status = %s"
        params += list(expect)
    sql = (f"WITH bumped AS (UPDATE {Execution._meta.db_table} SET {', '.join(sets)} WHERE id = %s{condition}"
           " RETURNING event_seq)")
    attempt_id = "NULL::bigint"
    if run is not None:
        values = []
        for field in _RUN_INSERT.fields:
            if field.name == "completed_seq" and completion is not None:
                values.append("bumped.event_seq - %s")
                params.append(len(events) - 1 - completion)
            else:
                values.append("%s")
                params.append(_db_value(run, field))
        sql += f", attempt AS (INSERT INTO {StepRun._meta.db_table} ({_RUN_INSERT.sql()})" \
               f" SELECT {', '.join(values)} FROM bumped RETURNING id)"
        attempt_id = "(SELECT id FROM attempt)"
    rows = ", ".join(["(%s, %s, %s)"] * len(events))
    params += [execution.pk, len(events), created_at]
    for index, (type, data) in enumerate(events, start=1):
        params += [index, type, json.dumps(data, cls=DjangoJSONEncoder)]
    sql += (
        f" INSERT INTO {ExecutionEvent._meta.db_table} (execution_id, seq, type, data, created_at)"
        " SELECT %s, bumped.event_seq - %s + v.ord, v.type, v.data::jsonb, %s"
        f" FROM bumped, (VALUES {rows}) AS v(ord, type, data) RETURNING id, seq, {attempt_id}"
    )
    return sql, params


def execution_insert_with_event(*, execution: Execution, type: str, data: dict[str, Any]) -> ExecutionEvent:
    """Insert the new, unsaved `execution` with its first event (seq 1): one statement on
    PostgreSQL. Nobody else can see the row before it commits, so there is no lock to take."""
    if connection.vendor != "postgresql":
        execution.save(force_insert=True)
        return event_append(execution=execution, type=type, data=data)
    execution.event_seq = 1
    created_at = timezone.now()
    params = [_db_value(execution, field) for field in _EXECUTION_INSERT.fields]
    params += [type, json.dumps(data, cls=DjangoJSONEncoder), created_at]
    sql = (
        f"WITH inserted AS (INSERT INTO {Execution._meta.db_table} ({_EXECUTION_INSERT.sql()})"
        f" VALUES ({', '.join(['%s'] * len(_EXECUTION_INSERT.fields))}) RETURNING id)"
        f" INSERT INTO {ExecutionEvent._meta.db_table} (execution_id, seq, type, data, created_at)"
        " SELECT inserted.id, 1, %s, %s::jsonb, %s FROM inserted RETURNING id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        (event_id,) = cursor.fetchone()
    execution._state.adding, execution._state.db = False, connection.alias
    logger.info(type, extra={"execution_id": str(execution.pk), "seq": 1})
    return ExecutionEvent(id=event_id, execution=execution, seq=1, type=type, data=data, created_at=created_at)


def _db_value(instance, field) -> Any:
    """What the ORM would write for `field` of `instance` in an INSERT (defaults, auto_now_add)."""
    return field.get_db_prep_save(field.pre_save(instance, True), connection)


def _log_fields(data: dict[str, Any] | None) -> dict[str, Any]:
    data = data or {}
    return {key: data[key] for key in ("node_id", "shard", "attempt") if key in data}
