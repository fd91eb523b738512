"""Workers run what was deployed (issue 10), with real worker processes on group `ingest`.

A step runs the artifact its run was pinned to: a worker that never got the apply's broadcast
loads it from the store on demand and then reports holding it; a run pinned before a re-apply
executes the old spec while a new run executes the new one; a row changed in SQL after apply
fails the step with `artifact_mismatch` instead of running it.

Every wait is bounded; workers are stopped by pid (the `start_worker` fixture).
"""
from __future__ import annotations

import pytest

from controlplane.deployments.models import JobDeployment, artifact_key
from controlplane.executions.models import ExecutionStatus, StepRun, StepStatus
from controlplane.executions.services import execution_start
from controlplane.fleet.models import Worker
from pipelines.planner import spec_digest
from tests.controlplane.executions.builders import edges, job, make_deployment, make_group
from tests.controlplane.executions.test_pinned_artifacts import tamper
from tests.e2e.engine_support import WORKER_ENV, wait_for_end
from tests.e2e.harness import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

FIRST, LATE = "ingest1@e2e", "late1@e2e"


@pytest.fixture
def ingest(company, landing_dir):
    return make_group(company, "ingest")


@pytest.fixture
def worker(start_worker, ingest, landing_dir):
    """Start a worker on `ingest` and wait until it is live with its step types (planning needs it)."""

    def start(hostname: str, *, concurrency: int = 1):
        process = start_worker([ingest.queue_name], hostname, concurrency=concurrency,
                               extra_env={**WORKER_ENV, "LANDING_STORE_URL": f"file://{landing_dir}"})
        wait_until(lambda: Worker.objects.live().filter(hostname=hostname).exclude(step_types=[]).exists(),
                   timeout=20, what=f"{hostname} live")
        return process

    return start


def release(version: int) -> tuple[list, list]:
    """Each version's `say` step says which version it is; `gate` holds the run for `hold` seconds."""
    nodes = [
        job("gate", "python", config={"callable": "sleep", "kwargs": {"seconds": "{{ .trigger.hold }}"}}),
        job("say", "python", config={"callable": "echo", "kwargs": {"version": version}}),
    ]
    return nodes, edges(("gate", "say"))


def output_of(execution, node_id: str):
    return StepRun.objects.get(execution=execution, node_id=node_id, is_compensation=False,
                               status=StepStatus.SUCCEEDED).output


def holds(hostname: str, key: str, digest: str) -> bool:
    worker = Worker.objects.filter(hostname=hostname).first()
    return bool(worker and (worker.loaded_artifacts or {}).get(key) == digest)


def late_worker_only(worker, first) -> None:
    """The group's first worker leaves; a new one that never got the apply's broadcast serves it."""
    first.stop()
    worker(LATE)
    assert Worker.objects.get(hostname=LATE).loaded_artifacts == {}


def test_a_worker_that_missed_the_broadcast_loads_the_artifact_on_demand_and_reports_it(worker, project, owner):
    first = worker(FIRST)
    deployment = make_deployment(project, *release(1), user=owner)
    late_worker_only(worker, first)

    execution, _ = execution_start(deployment=deployment, input={"hold": 0}, user=owner)
    execution = wait_for_end(execution, timeout=30)

    assert execution.status == ExecutionStatus.SUCCEEDED
    assert output_of(execution, "say") == {"version": 1}
    assert set(StepRun.objects.filter(execution=execution).values_list("worker", flat=True)) == {LATE}
    for jd in JobDeployment.objects.filter(deployment=deployment):  # the heartbeat now reports what it ran
        wait_until(lambda: holds(LATE, artifact_key(deployment.pk, jd.job_id), jd.digest), timeout=15,
                   what=f"{LATE} reporting {jd.job_id}")


def test_a_run_pinned_before_a_reapply_executes_the_old_spec_and_a_new_run_the_new_one(worker, project, owner):
    worker(FIRST, concurrency=2)
    deployment = make_deployment(project, *release(1), user=owner)
    before, _ = execution_start(deployment=deployment, input={"hold": 3}, user=owner)
    wait_until(lambda: StepRun.objects.filter(execution=before, node_id="gate", status=StepStatus.RUNNING).exists(),
               timeout=15, what="the first run's gate running")

    make_deployment(project, *release(2), user=owner, workflow=deployment.workflow)
    after, _ = execution_start(deployment=deployment, input={"hold": 0}, user=owner)
    before, after = wait_for_end(before, timeout=30), wait_for_end(after, timeout=30)

    assert before.status == after.status == ExecutionStatus.SUCCEEDED
    assert StepRun.objects.get(execution=before, node_id="say").started_at > after.started_at  # it ran after
    assert output_of(before, "say") == {"version": 1}
    assert output_of(after, "say") == {"version": 2}
    assert before.job("say")["artifact"] != after.job("say")["artifact"]


def test_a_tampered_artifact_fails_the_step_with_artifact_mismatch(worker, project, owner):
    first = worker(FIRST)
    deployment = make_deployment(project, *release(1), user=owner)
    late_worker_only(worker, first)
    digest = JobDeployment.objects.get(deployment=deployment, job_id="say").digest
    from controlplane.deployments.models import Artifact

    tampered = {**Artifact.objects.get(digest=digest).spec,
                "config": {"callable": "echo", "kwargs": {"version": "injected"}}}
    tamper(digest, tampered)

    execution, _ = execution_start(deployment=deployment, input={"hold": 0}, user=owner)
    execution = wait_for_end(execution, timeout=30)

    assert execution.status == ExecutionStatus.FAILED
    run = StepRun.objects.get(execution=execution, node_id="say", is_compensation=False)
    assert run.status == StepStatus.FAILED and run.attempt == 1 and run.output is None
    assert run.error["code"] == "artifact_mismatch" and run.error["retryable"] is False
    assert run.error["details"] == {"job_id": "say", "expected": digest, "actual": spec_digest(tampered)}
    assert output_of(execution, "gate") is not None  # its own artifact was intact
