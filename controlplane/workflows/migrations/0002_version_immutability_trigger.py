"""Refuse UPDATE and DELETE of published versions in the database itself.

See `controlplane.core.immutability.write_once_trigger_operations` for the scheme (PostgreSQL
refuses both; SQLite refuses UPDATE; re-create after a migration that rebuilds the table).
tests/controlplane/workflows/test_workflows_immutability.py fails if the trigger goes missing.
"""
from django.db import migrations

from controlplane.core.immutability import write_once_trigger_operations


class Migration(migrations.Migration):
    dependencies = [("workflows", "0001_initial")]

    operations = write_once_trigger_operations(
        table="workflows_workflowversion",
        name="workflows_version_immutable",
        what="workflow versions",
        hint="publish a new version; archive the workflow instead of deleting it",
    )
