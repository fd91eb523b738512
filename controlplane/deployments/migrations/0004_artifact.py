"""The artifact store: rendered job specs by (company, digest), written once.

Existing deployments' artifacts are copied in (each JobDeployment whose spec still matches its
digest), so runs of deployments applied before this migration run from the store too. UPDATE and
DELETE are refused in the database itself (`write_once_trigger_operations`);
tests/controlplane/deployments/test_artifacts.py fails if the trigger goes missing.
"""
import django.db.models.deletion
from django.db import migrations, models

from controlplane.core.immutability import write_once_trigger_operations
from pipelines.planner import spec_digest


def backfill(apps, schema_editor):
    JobDeployment = apps.get_model("deployments", "JobDeployment")
    Artifact = apps.get_model("deployments", "Artifact")
    rows = {}
    jobs = JobDeployment.objects.values_list("deployment__workflow__project__company_id", "digest", "spec")
    for company_id, digest, spec in jobs.iterator():
        if spec_digest(spec) == digest:  # a hand-edited spec is drift, not an artifact
            rows[(company_id, digest)] = Artifact(company_id=company_id, digest=digest, spec=spec)
    Artifact.objects.bulk_create(list(rows.values()), ignore_conflicts=True)


class Migration(migrations.Migration):

    dependencies = [
        ('deployments', '0003_reconcile_task_in_workers'),
        ('tenancy', '0001_initial'),
    ]

    operations = [
        migrations.CreateModel(
            name='Artifact',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('digest', models.CharField(help_text='`pipelines.planner.spec_digest` of the spec: sha256 of its canonical JSON.', max_length=80)),
                ('spec', models.JSONField(help_text='The rendered job artifact; secrets stay {"$secret": name} references.')),
                ('created_at', models.DateTimeField(auto_now_add=True, help_text='When an apply first stored it.')),
                ('company', models.ForeignKey(help_text='The tenant whose deployment rendered it.', on_delete=django.db.models.deletion.PROTECT, related_name='artifacts', to='tenancy.company')),
            ],
            options={
                'ordering': ['company_id', 'digest'],
                'constraints': [models.UniqueConstraint(fields=('company', 'digest'), name='artifact_unique_company_digest')],
            },
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop),
        *write_once_trigger_operations(
            table="deployments_artifact",
            name="deployments_artifact_immutable",
            what="artifacts",
            hint="apply a new spec: it is stored under its own digest",
        ),
    ]
