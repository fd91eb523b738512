"""Refuse UPDATE and DELETE of published blueprint versions in the database itself.

Same scheme as workflows/0002 (`controlplane.core.immutability.write_once_trigger_operations`).
tests/controlplane/catalog/test_blueprints.py fails if the trigger goes missing.
"""
from django.db import migrations

from controlplane.core.immutability import write_once_trigger_operations


class Migration(migrations.Migration):
    dependencies = [("catalog", "0001_initial")]

    operations = write_once_trigger_operations(
        table="catalog_blueprintversion",
        name="catalog_blueprint_version_immutable",
        what="blueprint versions",
        hint="publish a new version instead",
    )
