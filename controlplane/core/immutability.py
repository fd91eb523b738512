"""Rows written once: published versions (immutable) and audit events (append-only).

A model opts in by subclassing `WriteOnceModel` and naming the error it raises and what to say;
its manager is a `WriteOnceQuerySet`, because bulk writes (`update`, `delete`, `bulk_update`)
bypass `save()` and `delete()` and must be refused too. Where the database can enforce it as well,
a migration adds triggers with `write_once_trigger_operations`.
"""
from __future__ import annotations

from typing import ClassVar

from django.db import migrations, models


class WriteOnceQuerySet(models.QuerySet):
    def _refuse(self, verb: str):
        raise self.model.write_once_error(self.model.write_once_messages[verb])

    def update(self, **kwargs):
        self._refuse("update")

    def delete(self):
        self._refuse("delete")

    def bulk_update(self, objs, fields, batch_size=None):
        self._refuse("update")

    def update_or_create(self, *args, **kwargs):
        self._refuse("update")


class WriteOnceModel(models.Model):
    """Inserted once; `save()` of an existing row and `delete()` raise `write_once_error`."""

    write_once_error: ClassVar[type[Exception]]
    write_once_messages: ClassVar[dict[str, str]]  # {"update": ..., "delete": ...}

    objects = WriteOnceQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise self.write_once_error(self.write_once_messages["update"])
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise self.write_once_error(self.write_once_messages["delete"])


def write_once_trigger_operations(*, table: str, name: str, what: str, hint: str) -> list[migrations.RunPython]:
    """Migration operations that refuse UPDATE and DELETE of `table` in the database itself.

    PostgreSQL: a row trigger refuses both (TRUNCATE, which test-database flushes use, is
    untouched). SQLite: a trigger refuses UPDATE only; Django flushes SQLite test databases with
    DELETE, so deletion there is refused by the ORM layer (the model, its QuerySet, PROTECT keys).
    SQLite drops triggers when Django rebuilds a table: a later migration altering `table` must
    run these operations again.
    """
    postgres_forward = f"""
CREATE OR REPLACE FUNCTION {name}() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '{what} are immutable: % of {table} id % refused', TG_OP, OLD.id
        USING ERRCODE = 'restrict_violation', HINT = '{hint}';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER {name}
    BEFORE UPDATE OR DELETE ON {table}
    FOR EACH ROW EXECUTE FUNCTION {name}();
"""
    postgres_reverse = f"DROP TRIGGER IF EXISTS {name} ON {table}; DROP FUNCTION IF EXISTS {name}();"
    sqlite_forward = f"""
CREATE TRIGGER {name}_update BEFORE UPDATE ON {table}
BEGIN
    SELECT RAISE(ABORT, '{what} are immutable: UPDATE of {table} refused');
END;
"""
    sqlite_reverse = f"DROP TRIGGER IF EXISTS {name}_update;"

    def run(sql_by_vendor):
        def apply(apps, schema_editor):
            sql = sql_by_vendor.get(schema_editor.connection.vendor)
            if sql:
                schema_editor.execute(sql, params=None)  # None: the % in the SQL are not placeholders

        return apply

    return [
        migrations.RunPython(
            run({"postgresql": postgres_forward, "sqlite": sqlite_forward}),
            run({"postgresql": postgres_reverse, "sqlite": sqlite_reverse}),
            elidable=False,
        )
    ]
