"""The executions' store: every hand-written SQL statement and the one writer of attempts and status.

Reads (fixed SQL, compiled once per process: built through the ORM, the step path's reads cost
more to compile than to run): the execution row (locked or not), a run's attempts, and a run's
status, event sequence and attempts in one statement (the lock-free claim's snapshot).

Writes: `store_write` is the only code that changes a step attempt or a run's status, and it
appends the events that describe the change in the same statement or transaction; it refuses a
change without an event. That is what makes the lock-free path correct: every change appends an
event under the row lock (or, conditionally, as the one statement of the lock-free write), so an
unchanged event sequence proves an unchanged run. `connection.vendor` is switched on here only:
PostgreSQL gets one statement per write (the counter bump, any change to the execution row, the
events and the inserted attempt), elsewhere (SQLite, the embedded default) the same writes are
separate statements inside the caller's transaction.

Durable together (`durable_together`, what a fused task wraps its steps in): the lock-free
writes of side-effect-free steps inside the block commit without waiting for the WAL to reach
disk (`synchronous_commit` off for that statement's transaction only), and leaving the block
waits once for all of them, unless a synchronous commit after them (the run's finish) already
did. A fused task of N steps thus waits for one flush, not N, and by the time it returns (and
Celery acknowledges it) every write it made is as durable as before. Only a PostgreSQL crash
inside the block can lose some of them, and then the database is as if those statements never
ran: the task has not been acknowledged, nothing outside PostgreSQL has acted on them (the
steps have no side effects; the chord counts the task only once it returns; only a live event
stream may have shown their events, whose numbers the redelivery then uses again), and any later
synchronous commit that could depend on them flushes them first, so the redelivery (or the
watchdog's re-drive) runs them again, as after a worker killed at that point.
"""
from __future__ import annotations

import contextvars
import json
import logging
from collections import OrderedDict
from contextlib import contextmanager
from typing import Any, Iterable, Iterator, Sequence

from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, connection, transaction
from django.db.models import Model
from django.utils import timezone

from controlplane.executions.models import EventType, Execution, ExecutionEvent, ExecutionStatus, StepRun, StepStatus
from pipelines.engine import AttemptRecord, ExecutionGraph

logger = logging.getLogger(__name__)

Event = tuple[str, "dict[str, Any] | None"]


def is_postgresql() -> bool:
    """The one vendor switch of the engine: PostgreSQL's single-statement writes and lock-free
    claims, or the portable path."""
    return connection.vendor == "postgresql"


class Columns:
    """Some columns of a model: their SQL list and the ORM's conversion of the values read."""

    def __init__(self, model: type[Model], attnames: Sequence[str]) -> None:
        self.model = model
        self.attnames = tuple(attnames)
        self.fields = [model._meta.get_field(name) for name in self.attnames]
        self._converters: dict[str, list] = {}
        self._sql: dict[tuple[str, str], str] = {}

    def sql(self, alias: str = "") -> str:
        """The column list, quoted for the connection's database (and prefixed with `alias.`)."""
        key = (connection.vendor, alias)
        sql = self._sql.get(key)
        if sql is None:
            prefix = f"{alias}." if alias else ""
            sql = self._sql[key] = ", ".join(prefix + connection.ops.quote_name(f.column) for f in self.fields)
        return sql

    def convert(self, row: Sequence[Any]) -> list[Any]:
        """Database values -> Python values, as `QuerySet.values_list` would return them."""
        converters = self._converters.get(connection.vendor)
        if converters is None:
            converters = self._converters[connection.vendor] = [self._field_converters(f) for f in self.fields]
        values = list(row)
        for index, (column, funcs) in enumerate(converters):
            for func in funcs:
                values[index] = func(values[index], column, connection)
        return values

    def _field_converters(self, field) -> tuple[Any, list]:
        column = field.get_col(self.model._meta.db_table)
        return column, connection.ops.get_db_converters(column) + column.get_db_converters(connection)


def _execution_columns(*, with_graph: bool) -> Columns:
    # Everything the ORM read before (`.defer("canvas")`, or also "graph" when it is cached).
    skipped = {"canvas"} if with_graph else {"canvas", "graph"}
    return Columns(Execution, [f.attname for f in Execution._meta.concrete_fields if f.name not in skipped])


_EXECUTION = {True: _execution_columns(with_graph=True), False: _execution_columns(with_graph=False)}


def execution_locked_row(execution_id, *, with_graph: bool) -> Execution:
    """The execution, its row locked until the transaction ends (SQLite locks the database at
    BEGIN IMMEDIATE instead); the canvas (and unless `with_graph`, the graph) stays deferred and
    loads if touched. Raises `Execution.DoesNotExist` like `QuerySet.get`."""
    return execution_row(execution_id, with_graph=with_graph, lock=True)


def execution_row(execution_id, *, with_graph: bool, lock: bool = False) -> Execution:
    """The execution as `execution_locked_row` reads it, with or without the row lock."""
    columns = _EXECUTION[with_graph]
    lock = " FOR UPDATE" if lock and connection.features.has_select_for_update else ""
    sql = f"SELECT {columns.sql()} FROM {Execution._meta.db_table} WHERE {_pk_column(Execution)} = %s{lock}"
    with connection.cursor() as cursor:
        cursor.execute(sql, [Execution._meta.pk.get_db_prep_value(execution_id, connection)])
        row = cursor.fetchone()
    if row is None:
        raise Execution.DoesNotExist(f"execution {execution_id} does not exist")
    return Execution.from_db(connection.alias, columns.attnames, columns.convert(row))


RUN_COLUMNS = ("id", "node_id", "shard", "attempt", "status", "worker", "started_at", "shard_count")
_RUNS = {False: Columns(StepRun, RUN_COLUMNS), True: Columns(StepRun, RUN_COLUMNS + ("output",))}


def step_run_rows(execution_id, *, with_output: bool, node_ids: Iterable[str] | None = None) -> list[list[Any]]:
    """A run's attempts (not compensations) as value lists in `RUN_COLUMNS` order (+ output),
    oldest first; `node_ids` narrows them to some nodes."""
    columns = _RUNS[with_output]
    table, quote = StepRun._meta.db_table, connection.ops.quote_name
    params: list[Any] = [Execution._meta.pk.get_db_prep_value(execution_id, connection), False]
    sql = f"SELECT {columns.sql()} FROM {table} WHERE {quote('execution_id')} = %s AND {quote('is_compensation')} = %s"
    if node_ids is not None:
        node_ids = list(node_ids)
        if not node_ids:
            return []
        sql += f" AND {quote('node_id')} IN ({', '.join(['%s'] * len(node_ids))})"
        params += node_ids
    sql += f" ORDER BY {quote('id')}"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [columns.convert(row) for row in cursor.fetchall()]


def run_progress(execution_id, *, with_output: bool,
                 node_ids: Sequence[str] | None) -> tuple[str, int, list[list[Any]]] | None:
    """(status, event_seq, attempts of `node_ids` (None: of every node)) of a run, read together
    in one statement (so from one snapshot), without locking anything; None if there is no such
    run. The attempts are `step_run_rows`' value lists."""
    columns = _RUNS[with_output]
    quote = connection.ops.quote_name
    nodes = f" AND r.{quote('node_id')} IN ({', '.join(['%s'] * len(node_ids))})" if node_ids else ""
    sql = (
        f"SELECT e.{quote('status')}, e.{quote('event_seq')}, {columns.sql('r')}"
        f" FROM {Execution._meta.db_table} e LEFT JOIN {StepRun._meta.db_table} r"
        f" ON r.{quote('execution_id')} = e.{_pk_column(Execution)} AND r.{quote('is_compensation')} = %s{nodes}"
        f" WHERE e.{_pk_column(Execution)} = %s ORDER BY r.{quote('id')}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [False, *(node_ids or []), Execution._meta.pk.get_db_prep_value(execution_id, connection)])
        rows = cursor.fetchall()
    if not rows:
        return None
    status, event_seq = rows[0][0], rows[0][1]
    return status, event_seq, [columns.convert(row[2:]) for row in rows if row[2] is not None]


def _pk_column(model: type[Model]) -> str:
    return connection.ops.quote_name(model._meta.pk.column)


# The pinned graph is written once when a run starts and never changes, so each process parses
# it once (with the run's unchanging fields) instead of decoding the JSON on every step.
# Fields of a run that never change once it started: with the pinned graph, all that running a
# step needs besides the run's status and its step runs.
RUN_FACT_FIELDS = ("company_id", "deployment_id", "version_id", "environment", "trigger", "input", "started_at")


class PinnedGraph:
    """A run's pinned graph: the stored dict (`raw`, with `jobs`, the stored job dicts by id, which
    steps run from), its typed form (`graph`), and once known the run's unchanging fields
    (`facts`, see `remember_run`)."""

    __slots__ = ("raw", "graph", "jobs", "facts")

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw
        self.graph = ExecutionGraph.from_dict(raw)
        self.jobs = {job["id"]: job for job in raw.get("jobs", [])}
        self.facts: dict[str, Any] | None = None


_PINNED_CACHE: OrderedDict[str, PinnedGraph] = OrderedDict()
_PINNED_CACHE_SIZE = 512


def cached_pinned_graph(execution_id) -> PinnedGraph | None:
    """The run's pinned graph if this process has parsed it already, else None (no query)."""
    return _PINNED_CACHE.get(str(execution_id))


def pinned_graph(execution_id, raw: dict[str, Any] | None = None) -> PinnedGraph:
    """The run's pinned graph, parsed once per process (it is immutable once the run starts)."""
    key = str(execution_id)
    pinned = _PINNED_CACHE.get(key)
    if pinned is not None:
        _PINNED_CACHE.move_to_end(key)
        return pinned
    if raw is None:
        raw = Execution.objects.values_list("graph", flat=True).get(pk=execution_id)
    pinned = PinnedGraph(raw)
    _PINNED_CACHE[key] = pinned
    if len(_PINNED_CACHE) > _PINNED_CACHE_SIZE:
        _PINNED_CACHE.popitem(last=False)
    return pinned


def remember_run(execution: Execution) -> PinnedGraph:
    """Cache the run's pinned graph and unchanging fields from a fully loaded `execution`."""
    pinned = pinned_graph(execution.pk, execution.graph)
    if pinned.facts is None:
        pinned.facts = {name: getattr(execution, name) for name in RUN_FACT_FIELDS}
    return pinned


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


def attempt_records(execution_id, *, with_output: bool, node_ids: Iterable[str] | None = None) -> list[AttemptRecord]:
    """A run's attempts (not compensations) oldest first, in one query; outputs only when the
    caller needs them (they can be large), `node_ids` narrowing them to the nodes a claim is about."""
    return [attempt_record(row) for row in step_run_rows(execution_id, with_output=with_output, node_ids=node_ids)]


def attempt_record(row: Sequence[Any]) -> AttemptRecord:
    """One of `step_run_rows`' value lists (`RUN_COLUMNS`, + output) as the engine reads it."""
    return AttemptRecord(*row[:7], output=row[8] if len(row) > 8 else None, shard_count=row[7])


def succeeded_event(execution: Execution, skipped: Sequence[str]) -> Event:
    """Set `execution` succeeded (status, finished_at; unsaved) and return its event, for a
    `store_write` with `execution_fields=("status", "finished_at")`."""
    execution.status = ExecutionStatus.SUCCEEDED
    execution.finished_at = timezone.now()
    duration_ms = None
    if execution.started_at:
        duration_ms = int((execution.finished_at - execution.started_at).total_seconds() * 1000)
    return EventType.EXECUTION_SUCCEEDED, {"duration_ms": duration_ms, "skipped": list(skipped)}


class _Unflushed:
    """Whether a `durable_together` block has writes whose commit has not been flushed yet."""

    __slots__ = ("pending",)

    def __init__(self) -> None:
        self.pending = False


_TOGETHER: contextvars.ContextVar[_Unflushed | None] = contextvars.ContextVar("store_durable_together", default=None)


@contextmanager
def durable_together() -> Iterator[None]:
    """Inside: lock-free writes of steps (not a run's finish) commit without waiting for the WAL
    flush; leaving the block normally waits for one flush of them all (module docstring). An
    exception leaves without it: the task did not complete, and its retry runs what was lost."""
    if not is_postgresql():
        yield
        return
    state = _Unflushed()
    token = _TOGETHER.set(state)
    try:
        yield
    finally:
        _TOGETHER.reset(token)
    if state.pending:
        # A transaction with an id commits synchronously, so its commit waits for the WAL to be
        # flushed up to its own record: past every commit before it.
        with connection.cursor() as cursor:
            cursor.execute("SELECT txid_current()")


def store_write(
    *, execution: Execution, events: Sequence[Event], insert: StepRun | None = None,
    update: Sequence[tuple[StepRun, Sequence[str]]] = (), completes: StepRun | None = None,
    completion: int | None = None, execution_fields: Sequence[str] = (), expect_seq: int | None = None,
    expect_running: bool = False, expect_succeeded: tuple[Sequence[str], int] | None = None, create: bool = False,
) -> list[ExecutionEvent] | None:
    """Append `events` to the locked `execution` and, with them, make the change they describe:

    - `create`: `execution` itself is new and unsaved (a run starting): it is inserted with
      `events`, numbered from 1, in one statement, and nothing else may be given;
    - `insert`: a new, unsaved attempt; `update`: attempts already stored, with the fields set on
      the instances to save; `execution_fields`: fields of the execution set on the instance;
    - `completes` (the inserted or an updated attempt) gets `events[completion]`'s seq as its
      `completed_seq`.

    With `expect_seq` (PostgreSQL, outside any transaction: the lock-free claim) the write is one
    statement applied only if the run is still running at that sequence; None when it was not
    (then nothing was written). With `expect_running` instead, the same one statement applies if
    the run is still running, whatever else it appended meanwhile, and the unique attempt
    constraint refuses a second writer of the same attempt: None then too (see `optimistic`
    for when that is enough). `expect_succeeded` (node ids, shard count) adds to that condition
    that those nodes have that many shards recorded succeeded (a first attempt claimed in this
    one statement: `optimistic`). Raises ValueError for a change without an event, except the
    claim of a compensation (the run is compensating, so no lock-free claim reads it; the saga's
    own events close the compensation when it is recorded).
    """
    if not events and not (execution.status == ExecutionStatus.COMPENSATING and not execution_fields):
        raise ValueError("every change to an attempt or a run's status appends its event; pass `events`")
    if create:
        if insert is not None or update or completes is not None or execution_fields or expect_seq is not None \
                or expect_running or expect_succeeded is not None or not execution._state.adding:
            raise ValueError("`create` inserts a new, unsaved execution with its events and nothing else")
        return _insert_execution(execution, events)
    if completes is not None and completion is None:
        completion = len(events) - 1
    if expect_seq is not None or expect_running:
        if connection.in_atomic_block or not is_postgresql() or update:
            raise RuntimeError("a conditional write is one statement that commits by itself (PostgreSQL, outside "
                               "transaction.atomic, inserting only)")
        together = _TOGETHER.get()
        deferred = together is not None and expect_seq is None  # a run's finish is flushed as it commits
        try:
            appended = _append(execution, events, execution_fields, run=insert,
                               completion=completion if completes is insert else None,
                               expect=(expect_seq, ExecutionStatus.RUNNING.value, expect_succeeded),
                               deferred=deferred)
        except IntegrityError as error:
            if _constraint_of(error) != ATTEMPT_UNIQUE:
                raise
            return None  # the statement, a transaction of its own, wrote nothing
        if appended and together is not None:
            together.pending = deferred  # a synchronous commit flushed every commit before it
        return appended or None
    if not connection.in_atomic_block:
        raise RuntimeError("store_write changes rows under the execution lock: call it inside transaction.atomic")
    if not events:
        appended = []
    elif is_postgresql():
        appended = _append(execution, events, execution_fields, run=insert,
                           completion=completion if completes is not None and completes is insert else None)
    else:
        appended = _append(execution, events, execution_fields, run=None)
    if insert is not None and insert.pk is None:
        if completes is insert:
            insert.completed_seq = appended[completion].seq
        insert.save(force_insert=True)
    for run, fields in update:
        fields = list(fields)
        if completes is run:
            run.completed_seq = appended[completion].seq
            fields.append("completed_seq")
        run.save(update_fields=fields)
    return appended


def _append(execution, events, update_fields, *, run: StepRun | None, completion: int | None = None,
            expect: tuple | None = None, deferred: bool = False) -> list[ExecutionEvent]:
    created_at = timezone.now()
    events = [(type, data or {}) for type, data in events]
    if not is_postgresql():
        execution.event_seq += len(events)
        execution.save(update_fields=["event_seq", *update_fields])
        first = execution.event_seq - len(events) + 1
        appended = ExecutionEvent.objects.bulk_create(
            [ExecutionEvent(execution=execution, seq=first + offset, type=type, data=data, created_at=created_at)
             for offset, (type, data) in enumerate(events)]
        )
    else:
        sql, params = _append_statement(execution, events, update_fields, created_at, run=run,
                                        completion=completion, expect=expect, deferred=deferred)
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


_DEFERRED_COMMIT = "durability AS (SELECT set_config('synchronous_commit', 'off', true)), "

# The columns an INSERT writes (their SQL list is built once per database, see `Columns`).
_RUN_INSERT = Columns(StepRun, [f.attname for f in StepRun._meta.concrete_fields if not f.primary_key])
_EXECUTION_INSERT = Columns(Execution, [f.attname for f in Execution._meta.concrete_fields])


def _append_statement(execution, events, update_fields, created_at, *, run, completion, expect=None,
                      deferred: bool = False):
    """WITH bumped AS (UPDATE execution ... RETURNING event_seq), [attempt AS (INSERT step run)]
    INSERT events ... RETURNING id, seq, attempt id. With `expect` (event_seq, status) the update
    applies only to a row still in that state, and the inserts take their rows from it: no row,
    no writes. `deferred`: the statement's own transaction (autocommit) commits without waiting
    for the WAL flush (`durable_together`); the setting ends with that transaction."""
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
        seq, status, succeeded = expect
        if seq is not None:
            condition, params = " AND event_seq = %s", [*params, seq]
        condition += " AND status = %s"
        params.append(status)
        if succeeded is not None:
            node_ids, shards = succeeded
            condition += (
                f" AND (SELECT count(*) FROM (SELECT DISTINCT node_id, shard FROM {StepRun._meta.db_table}"
                " WHERE execution_id = %s AND NOT is_compensation AND status = %s AND node_id = ANY(%s)) AS done) = %s")
            params += [execution.pk, StepStatus.SUCCEEDED.value, list(node_ids), shards]
    if deferred:  # the update's condition reads the setting, so it is set before anything is written
        condition += " AND EXISTS (SELECT FROM durability)"
    sql = (f"WITH {_DEFERRED_COMMIT if deferred else ''}bumped AS (UPDATE {Execution._meta.db_table}"
           f" SET {', '.join(sets)} WHERE id = %s{condition} RETURNING event_seq)")
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


def _insert_execution(execution: Execution, events: Sequence[Event]) -> list[ExecutionEvent]:
    """Insert the new, unsaved `execution` with `events` numbered from 1: one statement on
    PostgreSQL. Nobody else can see the row before it commits, so there is no lock to take."""
    events = [(type, data or {}) for type, data in events]
    if not is_postgresql():
        execution.save(force_insert=True)
        return _append(execution, events, (), run=None)
    execution.event_seq = len(events)
    created_at = timezone.now()
    params = [_db_value(execution, field) for field in _EXECUTION_INSERT.fields]
    params.append(created_at)
    for index, (type, data) in enumerate(events, start=1):
        params += [index, type, json.dumps(data, cls=DjangoJSONEncoder)]
    sql = (
        f"WITH inserted AS (INSERT INTO {Execution._meta.db_table} ({_EXECUTION_INSERT.sql()})"
        f" VALUES ({', '.join(['%s'] * len(_EXECUTION_INSERT.fields))}) RETURNING id)"
        f" INSERT INTO {ExecutionEvent._meta.db_table} (execution_id, seq, type, data, created_at)"
        f" SELECT inserted.id, v.ord, v.type, v.data::jsonb, %s FROM inserted,"
        f" (VALUES {', '.join(['(%s, %s, %s)'] * len(events))}) AS v(ord, type, data) RETURNING id, seq"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        ids = dict((seq, event_id) for event_id, seq in cursor.fetchall())
    execution._state.adding, execution._state.db = False, connection.alias
    appended = [ExecutionEvent(id=ids[seq], execution=execution, seq=seq, type=type, data=data, created_at=created_at)
                for seq, (type, data) in enumerate(events, start=1)]
    for event in appended:
        logger.info(event.type, extra={"execution_id": str(execution.pk), "seq": event.seq})
    return appended


ATTEMPT_UNIQUE = "step_run_unique_attempt"


def _constraint_of(error: IntegrityError) -> str | None:
    diag = getattr(error.__cause__, "diag", None)
    return getattr(diag, "constraint_name", None)


def _db_value(instance, field) -> Any:
    """What the ORM would write for `field` of `instance` in an INSERT (defaults, auto_now_add)."""
    return field.get_db_prep_save(field.pre_save(instance, True), connection)


def _log_fields(data: dict[str, Any] | None) -> dict[str, Any]:
    data = data or {}
    return {key: data[key] for key in ("node_id", "shard", "attempt") if key in data}
