"""The reads a run's start makes, in plain SQL and one statement.

Starting runs is the control plane's hottest request (every trigger), and for its reads Django's
query compilation (five joins, a membership check, an EXISTS per group) cost several times what
PostgreSQL spends executing them. They are one statement, so a start waits on one round trip for
the deployment, its version, the caller's role, the artifact stamp and the groups' liveness (on a
busy machine each round trip also waits for both processes to be scheduled again). It returns
ordinary model instances built with `Model.from_db`, so callers see no difference. The tenancy
and liveness rules are the same as the selectors': a member of the deployment's company, and
`Worker.objects.live()`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from django.db import connection
from django.utils import timezone

from controlplane.deployments.models import Deployment, JobDeployment
from controlplane.fleet.models import Worker, WorkerGroup, WorkerStatus, offline_threshold
from controlplane.tenancy.models import Company, Membership, Project
from controlplane.workflows.models import Workflow, WorkflowVersion


@dataclass(frozen=True)
class StartTarget:
    deployment: Deployment  # with `.version` (id, number, graph) loaded
    company: Company  # id, slug, name
    caller_role: str
    workflow_status: str  # a paused or archived workflow starts no runs
    workflow_slug: str
    artifact_stamp: tuple  # (deployment revision, version of its artifact rows): see `_ARTIFACT_VERSION`
    groups: dict[str, tuple[WorkerGroup, bool]]  # {slug: (group, has a live worker)} of the company


def _table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _instance(model, **values):
    """`model.from_db` with values by attribute name (it wants them in the model's field order)."""
    names = [f.attname for f in model._meta.concrete_fields if f.attname in values]
    return model.from_db(connection.alias, names, [values[name] for name in names])


# What changes whenever any artifact row of a deployment is written, by any code path (apply, a
# hand edit in the admin, reconcile restoring a spec without a revision bump, a queryset update).
# On PostgreSQL every write makes a new row version with its own (xmin, ctid): a new transaction
# id, or within one transaction a new tuple slot (the old version cannot be reclaimed before the
# transaction ends), and a delete changes the set. A latest `updated_at` would not do there: two
# edits can commit in the other order than they took their timestamps. SQLite serialises writers
# from BEGIN on, so its timestamps follow commit order.
_ARTIFACT_VERSION = {
    True: "md5(string_agg(xmin::text || ctid::text, ',' ORDER BY id))",
    False: "count(*) || '/' || max(updated_at)",
}
# The company's worker groups with their liveness, as one JSON array column of the same row.
_JSON_ARRAYS = {True: ("json_agg", "json_build_array"), False: ("json_group_array", "json_array")}


def deployment_for_start(user, deployment_id, *, system: bool = False) -> StartTarget | None:
    """The deployment with its version and company, if the caller is a member of that company.

    On PostgreSQL the deployment row is read under a shared lock held until the start's
    transaction ends: apply, rollback, pause and undeploy update this row before they touch its
    artifacts, so none of them can be half-way while a run pins the version and artifacts read
    next. Concurrent starts share the lock. (SQLite serialises writers and has no row locks.) The
    workflow row is read, not locked: apply locks it before the deployment, so a share lock here
    could deadlock with it; a start racing a pause of the workflow is a run started just before.
    `system`: a trigger's start (schedule, webhook, chain) with no caller; no membership is needed.
    """
    user_id = getattr(user, "pk", None) if getattr(user, "is_authenticated", False) else None
    try:
        deployment_id = int(deployment_id)
    except (TypeError, ValueError):
        return None
    if user_id is None and not system:
        return None
    postgresql = connection.vendor == "postgresql"
    through = Worker.groups.through
    worker_column = through._meta.get_field("worker").column
    group_column = through._meta.get_field("workergroup").column
    aggregate, array = _JSON_ARRAYS[postgresql]
    sql = (
        "SELECT d.id, d.workflow_id, d.environment, d.status, d.version_id, v.number, v.graph,"
        " c.id, c.slug, c.name, m.role, d.revision, a.version, w.status, w.slug,"
        f" (SELECT {aggregate}({array}(g.id, g.slug, EXISTS ("
        f"   SELECT 1 FROM {_table(through)} gw JOIN {_table(Worker)} wk ON wk.id = gw.{worker_column}"
        f"   WHERE gw.{group_column} = g.id AND wk.status = %s AND wk.last_heartbeat > %s)))"
        f"  FROM {_table(WorkerGroup)} g WHERE g.company_id = c.id)"
        f" FROM {_table(Deployment)} d"
        f" JOIN {_table(Workflow)} w ON w.id = d.workflow_id"
        f" JOIN {_table(Project)} p ON p.id = w.project_id"
        f" JOIN {_table(Company)} c ON c.id = p.company_id"
        f" JOIN {_table(WorkflowVersion)} v ON v.id = d.version_id"
        + (f" LEFT JOIN {_table(Membership)} m ON 1 = 0" if system else
           f" JOIN {_table(Membership)} m ON m.company_id = c.id AND m.user_id = %s") +
        f" CROSS JOIN (SELECT {_ARTIFACT_VERSION[postgresql]} AS version"
        f"   FROM {_table(JobDeployment)} WHERE deployment_id = %s) a"
        " WHERE d.id = %s"
        + (" FOR SHARE OF d" if postgresql else "")
    )
    fresh_after = timezone.now() - offline_threshold()
    with connection.cursor() as cursor:
        member = [] if system else [user_id]
        cursor.execute(sql, [WorkerStatus.ONLINE.value, fresh_after, *member, deployment_id, deployment_id])
        row = cursor.fetchone()
    if row is None:
        return None
    (d_id, workflow_id, environment, status, version_id, number, graph, c_id, c_slug, c_name, role,
     revision, artifact_version, workflow_status, workflow_slug, groups) = row
    graph = WorkflowVersion._meta.get_field("graph").from_db_value(graph, None, connection)
    # workflow_id too: the API's answer names the run's workflow, which would be another query.
    version = _instance(WorkflowVersion, id=version_id, workflow_id=workflow_id, number=number, graph=graph)
    deployment = _instance(
        Deployment, id=d_id, workflow_id=workflow_id, environment=environment, status=status, version_id=version_id,
        revision=revision,
    )
    deployment.version = version
    company = _instance(Company, id=c_id, slug=c_slug, name=c_name)
    if isinstance(groups, str):  # SQLite answers JSON as text
        groups = json.loads(groups)
    return StartTarget(
        deployment=deployment, company=company, caller_role=role, artifact_stamp=(revision, artifact_version),
        workflow_status=workflow_status, workflow_slug=workflow_slug,
        groups={
            slug: (_instance(WorkerGroup, id=group_id, slug=slug, company_id=c_id), bool(live))
            for group_id, slug, live in groups or ()
        },
    )
