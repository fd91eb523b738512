"""A worker's log is JSON lines, and every engine record names what it is about."""
from __future__ import annotations

import json

import pytest

from controlplane.executions.models import ExecutionStatus
from controlplane.executions.services import execution_start
from tests.controlplane.executions.builders import edges, job, make_deployment, make_group
from tests.e2e.engine_support import WORKER_ENV, wait_for_end, wait_live
from tests.e2e.harness import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

CONTEXT = {"execution_id", "node", "shard", "attempt", "company_id", "group", "worker", "task", "task_id",
           "trace_id", "span_id"}


def records(text: str) -> list[dict]:
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass  # a span printed by the console exporter spans several lines
    return out


def test_engine_records_carry_the_run_s_context_as_json_fields(start_worker, company, project, owner):
    group = make_group(company, "ingest")
    worker = start_worker([group.queue_name], "ingest1@e2e",
                          extra_env={**WORKER_ENV, "LOG_FORMAT": "json", "FLOWPLANE_OTEL": "console"})
    wait_live(group)
    deployment = make_deployment(project, [
        job("hello", "log", config={"message": "hello from {{ .trigger.who }}"}),
        job("shape", "jq", config={"program": ".trigger"}),
    ], edges(("hello", "shape")), user=owner)

    execution, _ = execution_start(deployment=deployment, input={"who": "logs"}, user=owner)
    assert wait_for_end(execution, timeout=30).status == ExecutionStatus.SUCCEEDED

    line = wait_until(lambda: next((r for r in records(worker.log_text())
                                    if r.get("event") == "step.log hello from logs"), None),
                      timeout=10, what="the log step's record")
    assert CONTEXT <= set(line), sorted(CONTEXT - set(line))
    assert (line["execution_id"], line["node"], line["shard"], line["attempt"]) == (str(execution.pk), "hello", 0, 1)
    assert (line["company_id"], line["group"], line["worker"]) == (company.pk, "ingest", "ingest1@e2e")
    # log -> jq: two side-effect-free steps on one group, fused into one task.
    assert line["task"] == "flowplane.steps" and line["level"] == "info" and len(line["trace_id"]) == 32
    # Celery's own lines are JSON too, and records outside a task carry no run's context.
    ready = next(r for r in records(worker.log_text()) if "ready." in r.get("event", ""))
    assert "execution_id" not in ready
