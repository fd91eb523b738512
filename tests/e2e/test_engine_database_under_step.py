"""The database fails while a claimed step runs, before the step has done anything outside: the
engine's own reads inside the step (the company's egress allow-list, read when the step
connects) hit the broken connection. That is the database failing, not the step: the task retries
and its retry takes the attempt over, instead of the attempt failing for good and the run being
compensated. Found by bench/chaos.py (kind pg_connections_cut, a fan-out shard claimed but not yet
connected when the connections were cut)."""
from __future__ import annotations

import pytest
from django.db import connection

from controlplane.executions.models import ExecutionStatus, StepRun, StepStatus
from controlplane.executions.services import execution_start
from tests.controlplane.executions.builders import job, make_deployment, make_group
from tests.e2e.engine_support import WORKER_ENV, recorder, wait_for_end, wait_live  # noqa: F401  (fixtures)
from tests.e2e.harness import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _terminate_worker_backends() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                       " WHERE datname = current_database() AND pid <> pg_backend_pid()")
        return cursor.fetchone()[0]


def test_a_database_cut_under_a_claimed_step_before_it_connects_is_retried_not_failed(
    start_worker, recorder, company, project, owner, tmp_path
):
    group = make_group(company, "solo")
    # Every connect reads the allow-list from PostgreSQL (no per-process cache to hide the cut).
    start_worker([group.queue_name], "solo1@e2e", extra_env={**WORKER_ENV, "EGRESS_RULES_CACHE_S": "0"})
    wait_live(group)
    flag = tmp_path / "connect-now"
    port = int(recorder.base_url.rsplit(":", 1)[1])
    deployment = make_deployment(project, [
        job("connect", "python", group="solo",
            config={"callable": "e2e.connect_when", "kwargs": {"flag": str(flag), "host": "127.0.0.1", "port": port}}),
    ], [], user=owner)

    execution, _ = execution_start(deployment=deployment, input={}, user=owner)
    wait_until(lambda: StepRun.objects.filter(execution=execution, status=StepStatus.RUNNING).exists(),
               timeout=20, what="the step to be claimed")
    assert _terminate_worker_backends() >= 1
    flag.touch()
    execution = wait_for_end(execution, timeout=30)

    assert execution.status == ExecutionStatus.SUCCEEDED, execution.error
    attempts = list(StepRun.objects.filter(execution=execution).values_list("status", flat=True))
    assert attempts[-1] == StepStatus.SUCCEEDED and StepStatus.FAILED not in attempts, attempts
