"""`./manage.py reconcile`: list drift of deployments (default) or converge it (`--apply`)."""
from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from controlplane.core.errors import ApplicationError
from controlplane.deployments.models import Deployment, DeploymentStatus
from controlplane.deployments.services import deployment_reconcile, reconcile_schedule_ensure


class Command(BaseCommand):
    help = "Detect drift of active deployments; --apply converges it. --ensure-schedule (re)creates the beat task."

    def add_arguments(self, parser):
        parser.add_argument("--deployment", type=int, action="append", default=[], help="Deployment id (repeatable).")
        parser.add_argument("--apply", action="store_true", help="Converge instead of a dry run.")
        parser.add_argument("--no-probe", action="store_true", help="Use heartbeats only; do not ask workers.")
        parser.add_argument("--ensure-schedule", action="store_true", help="Create the periodic reconcile task.")

    def handle(self, *args, **options):
        if options["ensure_schedule"]:
            task = reconcile_schedule_ensure()
            self.stdout.write(f"periodic task {task.name!r} every {task.interval}")
        deployments = Deployment.objects.filter(status=DeploymentStatus.ACTIVE)
        if options["deployment"]:
            deployments = Deployment.objects.filter(pk__in=options["deployment"])
        drifted = 0
        for deployment in deployments.order_by("id"):
            try:
                report = deployment_reconcile(deployment=deployment, dry_run=not options["apply"], user=None,
                                              probe=not options["no_probe"])
            except ApplicationError as exc:
                raise CommandError(f"deployment {deployment.pk}: {exc.code}: {exc.detail}") from None
            drifted += bool(report["drift"])
            self.stdout.write(json.dumps(report, sort_keys=True, default=str))
        if drifted and not options["apply"]:
            raise SystemExit(2)
