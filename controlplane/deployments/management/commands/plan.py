"""`./manage.py plan`: preview a deployment like `terraform plan`.

Exit code 0: no changes; 2: changes; 1: errors. The plan is stored (apply it with
`POST /api/v1/plans/<id>/apply`); its id goes to stderr so stdout stays the plan.
"""
from __future__ import annotations

import json
import sys

from django.core.management.base import BaseCommand, CommandError

from controlplane.core.errors import ApplicationError
from controlplane.deployments.services import plan_create
from controlplane.workflows.models import Workflow, WorkflowVersion
from pipelines.plan_format import exit_code, plan_from_json


def _pairs(values: list[str], option: str, cast=str) -> dict:
    out = {}
    for value in values or []:
        key, sep, raw = value.partition("=")
        if not sep or not key or not raw:
            raise CommandError(f"--{option} {value!r}: use job=value")
        try:
            out[key] = cast(raw)
        except ValueError:
            raise CommandError(f"--{option} {value!r}: {raw!r} is not a valid value") from None
    return out


class Command(BaseCommand):
    help = "Plan a workflow version onto the fleet and print the diff (exit 0 no changes, 2 changes, 1 errors)."

    def add_base_argument(self, parser, *args, **kwargs):
        if "--version" in args:  # Django's own --version would shadow the workflow version option
            return
        super().add_base_argument(parser, *args, **kwargs)

    def add_arguments(self, parser):
        parser.add_argument("--company", required=True, help="Company slug.")
        parser.add_argument("--project", help="Project slug (needed when the workflow slug is ambiguous).")
        parser.add_argument("--workflow", required=True, help="Workflow slug.")
        parser.add_argument("--version", required=True, type=int, dest="version_number", help="Version number.")
        parser.add_argument("--environment", required=True, help="Environment slug, e.g. prod.")
        parser.add_argument("--placement", action="append", default=[], metavar="JOB=GROUP")
        parser.add_argument("--replicas", action="append", default=[], metavar="JOB=N")
        parser.add_argument("--json", action="store_true", help="Print the plan JSON instead of text.")
        parser.add_argument("--user", help="Username recorded as the planner (optional).")

    def handle(self, *args, **options):
        workflows = Workflow.objects.filter(project__company__slug=options["company"], slug=options["workflow"])
        if options.get("project"):
            workflows = workflows.filter(project__slug=options["project"])
        workflows = list(workflows.select_related("project__company")[:2])
        if not workflows:
            raise CommandError(f"workflow {options['workflow']!r} not found in company {options['company']!r}")
        if len(workflows) > 1:
            raise CommandError(f"workflow slug {options['workflow']!r} exists in several projects; pass --project")
        workflow = workflows[0]
        version = WorkflowVersion.objects.filter(workflow=workflow, number=options["version_number"]).first()
        if version is None:
            raise CommandError(f"workflow {workflow.slug!r} has no version {options['version_number']}")
        user = None
        if options.get("user"):
            from django.contrib.auth import get_user_model

            user = get_user_model().objects.filter(username=options["user"]).first()
        try:
            row = plan_create(
                workflow=workflow, version=version, environment=options["environment"],
                placement=_pairs(options["placement"], "placement"), replicas=_pairs(options["replicas"], "replicas", int),
                user=user,
            )
        except ApplicationError as exc:
            raise CommandError(f"{exc.code}: {exc.detail}") from None
        if options["json"]:
            self.stdout.write(json.dumps({"id": str(row.pk), **row.plan}, indent=2, sort_keys=True))
        else:
            self.stdout.write(row.text, ending="")
        self.stderr.write(f"Saved plan {row.pk}; apply it with POST /api/v1/plans/{row.pk}/apply")
        self.stdout.flush()
        sys.exit(exit_code(plan_from_json(row.plan)))
