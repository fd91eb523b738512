"""`./manage.py plan`: preview a deployment like `terraform plan`.

Exit code 0: no changes; 2: changes; 1: errors. The plan is stored (apply it with
`POST /api/v1/plans/<id>/apply`); its id goes to stderr so stdout stays the plan.

    manage.py plan --company acme --workflow orders --version 1 --environment prod [--project data]
"""
from __future__ import annotations

import json
import sys

from django.core.management.base import BaseCommand, CommandError

from controlplane.core.errors import ApplicationError
from controlplane.deployments.services import plan_create
from controlplane.tenancy.models import Company
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


def _workflow(company: str, slug: str, project: str | None) -> Workflow:
    """The workflow `slug` of `company`; `project` is needed only when several projects hold that slug."""
    if not Company.objects.filter(slug=company).exists():
        raise CommandError(f"--company {company!r}: no such company (give its slug, e.g. acme)")
    workflows = Workflow.objects.filter(project__company__slug=company, slug=slug).select_related("project__company")
    if project:
        workflows = workflows.filter(project__slug=project)
    found = list(workflows.order_by("project__slug"))
    where = f"company {company!r}" + (f", project {project!r}" if project else "")
    if not found:
        raise CommandError(f"--workflow {slug!r}: no workflow with that slug in {where}")
    if len(found) > 1:
        projects = ", ".join(w.project.slug for w in found)
        raise CommandError(f"--workflow {slug!r} exists in several projects of {where} ({projects}); pass --project")
    return found[0]


class Command(BaseCommand):
    help = "Plan a workflow version onto the fleet and print the diff (exit 0 no changes, 2 changes, 1 errors)."

    def add_base_argument(self, parser, *args, **kwargs):
        if "--version" in args:  # Django's own --version would shadow the workflow version option
            return
        super().add_base_argument(parser, *args, **kwargs)

    def add_arguments(self, parser):
        parser.add_argument("--company", required=True, help="Company slug.")
        parser.add_argument(
            "--project", help="Project slug; optional, needed only when several projects of the company hold the workflow slug."
        )
        parser.add_argument("--workflow", required=True, help="Workflow slug.")
        parser.add_argument("--version", required=True, type=int, dest="version_number", help="Version number.")
        parser.add_argument("--environment", required=True, help="Environment slug, e.g. prod.")
        parser.add_argument("--placement", action="append", default=[], metavar="JOB=GROUP")
        parser.add_argument("--replicas", action="append", default=[], metavar="JOB=N")
        parser.add_argument("--json", action="store_true", help="Print the plan JSON instead of text.")
        parser.add_argument("--user", help="Username recorded as the planner (optional).")

    def handle(self, *args, **options):
        workflow = _workflow(options["company"], options["workflow"], options.get("project"))
        version = WorkflowVersion.objects.filter(workflow=workflow, number=options["version_number"]).first()
        if version is None:
            numbers = list(workflow.versions.order_by("number").values_list("number", flat=True))
            published = f"published: {', '.join(map(str, numbers))}" if numbers else "none is published yet"
            raise CommandError(f"--version {options['version_number']}: workflow {workflow.slug!r} has no such version ({published})")
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
