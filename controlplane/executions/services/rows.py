"""The step path's reads in fixed SQL: the execution lock and a run's step attempts.

Every task of a canvas locks its execution and reads the attempts it decides on. Built through
the ORM, those two queries cost more to compile than to run (measured: 0.6 ms of compilation on
top of a 0.8 ms locked read, 0.35 ms on top of 0.3 ms for the attempts), and the step path runs
them once per task. So the SQL is written once per process, and the values come back through the
same converters the ORM applies (`Columns`), which keeps them right on PostgreSQL and SQLite.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

from django.db import connection
from django.db.models import Model

from controlplane.executions.models import Execution, StepRun


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


RUN_COLUMNS = ("id", "node_id", "shard", "attempt", "status", "worker", "started_at")
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
