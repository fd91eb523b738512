"""Refuse UPDATE and DELETE of published versions in the database itself.

PostgreSQL: a row trigger refuses both (TRUNCATE, which test-database flushes use, is untouched).
SQLite: a trigger refuses UPDATE only. Django flushes SQLite test databases with DELETE, so a
DELETE trigger would break transactional tests; deletion there is refused by the ORM layer
(`WorkflowVersion.delete`, its QuerySet, and the PROTECT foreign key). SQLite drops triggers when
Django rebuilds a table, so a later migration that alters this table must re-create it;
tests/controlplane/workflows/test_immutability.py fails if the trigger goes missing.
"""
from django.db import migrations

TABLE = "workflows_workflowversion"

POSTGRES_FORWARD = f"""
CREATE OR REPLACE FUNCTION workflows_version_immutable() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'workflow versions are immutable: % of {TABLE} id % refused', TG_OP, OLD.id
        USING ERRCODE = 'restrict_violation',
              HINT = 'publish a new version; archive the workflow instead of deleting it';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER workflows_version_immutable
    BEFORE UPDATE OR DELETE ON {TABLE}
    FOR EACH ROW EXECUTE FUNCTION workflows_version_immutable();
"""
POSTGRES_REVERSE = f"""
DROP TRIGGER IF EXISTS workflows_version_immutable ON {TABLE};
DROP FUNCTION IF EXISTS workflows_version_immutable();
"""
SQLITE_FORWARD = f"""
CREATE TRIGGER workflows_version_immutable_update BEFORE UPDATE ON {TABLE}
BEGIN
    SELECT RAISE(ABORT, 'workflow versions are immutable: UPDATE of {TABLE} refused');
END;
"""
SQLITE_REVERSE = "DROP TRIGGER IF EXISTS workflows_version_immutable_update;"


def _run(sql_by_vendor):
    def run(apps, schema_editor):
        sql = sql_by_vendor.get(schema_editor.connection.vendor)
        if sql:
            schema_editor.execute(sql, params=None)  # None: the % in the SQL are not placeholders

    return run


class Migration(migrations.Migration):
    dependencies = [("workflows", "0001_initial")]

    operations = [
        migrations.RunPython(
            _run({"postgresql": POSTGRES_FORWARD, "sqlite": SQLITE_FORWARD}),
            _run({"postgresql": POSTGRES_REVERSE, "sqlite": SQLITE_REVERSE}),
            elidable=False,
        ),
    ]
