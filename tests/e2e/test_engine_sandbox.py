"""End-to-end sandboxed jq on a real worker: a program that loops or allocates fails its step
with resource_exhausted (not retried, dead-lettered, compensated), the run ends, and the same
pool process goes on to run the next run."""
from __future__ import annotations

import time

import pytest

from controlplane.executions.models import DeadLetter, ExecutionStatus, StepRun, StepStatus
from tests.controlplane.executions.builders import edges, job, make_deployment
from tests.e2e.engine_support import HOSTS, fleet, run_to_end  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

FAST_RETRY = {"max_attempts": 3, "initial_delay_s": 0.05, "max_delay_s": 0.2, "jitter": False}


def failing_run(project, owner, node: dict, timeout: float):
    """A run of `book` (compensated by a log step) then `node`; returns (run, node's attempts)."""
    book = job("book", "log", config={"message": "booked"},
               compensate={"type": "log", "config": {"message": "unbooked"}})
    deployment = make_deployment(project, [book, node], edges(("book", node["id"])), user=owner)
    started = time.monotonic()
    execution = run_to_end(deployment, owner, timeout=timeout)
    elapsed = time.monotonic() - started
    attempts = list(StepRun.objects.filter(execution=execution, node_id=node["id"], is_compensation=False))
    return execution, attempts, elapsed


def test_a_runaway_jq_step_fails_with_resource_exhausted_and_the_worker_keeps_working(fleet, project, owner):
    worker = fleet.workers["ingest"]
    pool_before = sorted(worker.child_pids())

    # given a jq loop within a 2 s timeout_s
    loop = job("spin", "jq", config={"program": "def f: f; f"}, timeout_s=2, retry=FAST_RETRY)
    execution, attempts, elapsed = failing_run(project, owner, loop, timeout=30)

    # then the step failed once, for good, naming its budget; the run ended and was compensated
    assert execution.status == ExecutionStatus.COMPENSATED, execution.error
    assert [a.status for a in attempts] == [StepStatus.FAILED], [a.error for a in attempts]
    error = attempts[0].error
    assert error["retryable"] is False
    assert error["code"] == "resource_exhausted" and error["details"]["limit"] == "time"
    assert "time budget" in error["message"]
    assert attempts[0].duration_ms < 2000 and elapsed < 20
    assert DeadLetter.objects.get(execution=execution).node_id == "spin"

    # given an allocation without timeout_s (default budget, memory cap) in a template
    grow = job("grow", "log", config={"message": "{{ [range(1e9)] | length }}"}, retry=FAST_RETRY)
    execution, attempts, _ = failing_run(project, owner, grow, timeout=40)
    assert execution.status == ExecutionStatus.COMPENSATED, execution.error
    assert len(attempts) == 1 and attempts[0].error["code"] == "resource_exhausted"
    assert attempts[0].error["details"]["path"] == "config.message"

    # then the same worker process runs the next run
    deployment = make_deployment(project, [
        job("ok", "jq", config={"program": "[range(5)] | map(. * 2) | add"}),
        job("env", "jq", config={"program": "$ENV | {SECRET_KEY, DATABASE_URL}"}),
    ], edges(("ok", "env")), user=owner)
    execution = run_to_end(deployment, owner)
    assert execution.status == ExecutionStatus.SUCCEEDED, execution.error
    outputs = dict(StepRun.objects.filter(execution=execution).values_list("node_id", "output"))
    assert outputs == {"ok": 20, "env": {"SECRET_KEY": None, "DATABASE_URL": None}}
    assert set(StepRun.objects.filter(execution=execution).values_list("worker", flat=True)) == {HOSTS["ingest"]}
    assert sorted(worker.child_pids()) == pool_before  # no pool process was killed or replaced
