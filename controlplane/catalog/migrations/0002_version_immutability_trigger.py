"""Refuse UPDATE and DELETE of published blueprint versions in the database itself.

Same scheme as workflows/0002: PostgreSQL refuses both with a row trigger (TRUNCATE, used by
test-database flushes, is untouched); SQLite refuses UPDATE only, because Django flushes SQLite
test databases with DELETE. There, deletion is refused by the ORM (`BlueprintVersion.delete`, its
QuerySet, the PROTECT foreign key). SQLite drops triggers when Django rebuilds a table, so a later
migration that alters this table must re-create it; tests/controlplane/catalog/test_blueprints.py
fails if the trigger goes missing.
"""
from django.db import migrations

TABLE = "catalog_blueprintversion"

POSTGRES_FORWARD = f"""
CREATE OR REPLACE FUNCTION catalog_blueprint_version_immutable() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'blueprint versions are immutable: % of {TABLE} id % refused', TG_OP, OLD.id
        USING ERRCODE = 'restrict_violation',
              HINT = 'publish a new version instead';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER catalog_blueprint_version_immutable
    BEFORE UPDATE OR DELETE ON {TABLE}
    FOR EACH ROW EXECUTE FUNCTION catalog_blueprint_version_immutable();
"""
POSTGRES_REVERSE = f"""
DROP TRIGGER IF EXISTS catalog_blueprint_version_immutable ON {TABLE};
DROP FUNCTION IF EXISTS catalog_blueprint_version_immutable();
"""
SQLITE_FORWARD = f"""
CREATE TRIGGER catalog_blueprint_version_immutable_update BEFORE UPDATE ON {TABLE}
BEGIN
    SELECT RAISE(ABORT, 'blueprint versions are immutable: UPDATE of {TABLE} refused');
END;
"""
SQLITE_REVERSE = "DROP TRIGGER IF EXISTS catalog_blueprint_version_immutable_update;"


def _run(sql_by_vendor):
    def run(apps, schema_editor):
        sql = sql_by_vendor.get(schema_editor.connection.vendor)
        if sql:
            schema_editor.execute(sql, params=None)  # None: the % in the SQL are not placeholders

    return run


class Migration(migrations.Migration):
    dependencies = [("catalog", "0001_initial")]

    operations = [
        migrations.RunPython(
            _run({"postgresql": POSTGRES_FORWARD, "sqlite": SQLITE_FORWARD}),
            _run({"postgresql": POSTGRES_REVERSE, "sqlite": SQLITE_REVERSE}),
            elidable=False,
        ),
    ]
