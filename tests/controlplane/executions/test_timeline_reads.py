"""`GET /executions/{id}/timeline` reads only what the timeline shows, and answers exactly as the
timeline of the fully loaded run does."""
from __future__ import annotations

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.renderers import JSONRenderer

from controlplane.executions.models import Execution
from controlplane.executions.selectors import execution_timeline
from controlplane.executions.services import Delivery, execution_start, step_execute
from tests.controlplane.executions.test_api import URL, deployment  # noqa: F401  (fixture)
from controlplane.tenancy.models import Company, Role
from tests.factories import add_member

pytestmark = pytest.mark.django_db


def _ran(deployment, owner):  # noqa: F811
    execution, _ = execution_start(deployment=deployment, input={"v": 7}, user=owner)
    delivery = Delivery(task_id="t", worker="ingest1@unit", queue="wg.acme.ingest")
    for node_id in ("a", "b", "b"):  # b fails once, then succeeds
        step_execute(execution_id=execution.pk, node_id=node_id, shard=0, shard_count=1, delivery=delivery)
    return execution


def test_the_timeline_answers_as_the_fully_loaded_run_s_timeline(client_for, owner, deployment):  # noqa: F811
    execution = _ran(deployment, owner)

    answer = client_for(owner).get(f"{URL}/{execution.pk}/timeline")

    full = execution_timeline(execution=Execution.objects.select_related("version__workflow", "company")
                              .get(pk=execution.pk))
    assert answer.status_code == 200
    assert answer.json() == json.loads(JSONRenderer().render(full))
    assert [h["status"] for h in answer.json()["steps"][1]["attempt_history"]] == ["failed", "succeeded"]


def test_the_timeline_skips_the_canvas_and_the_stored_requests(client_for, owner, deployment):  # noqa: F811
    execution = _ran(deployment, owner)
    client = client_for(owner)

    with CaptureQueriesContext(connection) as queries:
        assert client.get(f"{URL}/{execution.pk}/timeline").status_code == 200

    reads = [q["sql"] for q in queries.captured_queries if "executions_" in q["sql"]]
    assert len(reads) == 2, reads  # the run (tenant-scoped) and its attempts
    assert all('"canvas"' not in sql and '"request"' not in sql and "workflows_" not in sql for sql in reads), reads


def test_another_tenant_s_timeline_is_a_404(client_for, owner, deployment):  # noqa: F811
    execution = _ran(deployment, owner)
    outsider = add_member(Company.objects.create(slug="elsewhere", name="Elsewhere"), role=Role.OWNER)

    assert client_for(outsider).get(f"{URL}/{execution.pk}/timeline").status_code == 404
    assert client_for(owner).get(f"{URL}/not-a-uuid/timeline").status_code == 404
