"""Given-steps for page tests: deployed workflows and executions driven through the engine services.

No workers: each step is executed by calling the service a worker task would call.
"""
from __future__ import annotations

from controlplane.executions.models import Execution, StepRun
from controlplane.executions.services import (
    Delivery,
    compensation_execute,
    execution_start,
    saga_finish,
    saga_start,
    step_execute,
)

DELIVERY = Delivery(task_id="t-web", worker="ingest1@unit", queue="wg.acme.ingest", request={"id": "t-web"})


def started(deployment, *, user, input: dict | None = None) -> Execution:
    execution, _ = execution_start(deployment=deployment, input=input or {}, user=user)
    return execution


def run_steps(execution: Execution, *node_ids: str) -> Execution:
    """Execute the nodes in order, the last one as the canvas's final task (it finishes the run)."""
    for index, node_id in enumerate(node_ids):
        step_execute(execution_id=execution.pk, node_id=node_id, shard=0, shard_count=1, delivery=DELIVERY,
                     final=index == len(node_ids) - 1)
    execution.refresh_from_db()
    return execution


def compensate_all(execution: Execution) -> Execution:
    """Run the saga of a failed run: start, compensate each succeeded step (latest first), finish."""
    saga_start(execution_id=execution.pk, delivery=DELIVERY)
    done = StepRun.objects.filter(execution=execution, is_compensation=False, status="succeeded")
    for run in done.order_by("-completed_seq"):
        compensation_execute(execution_id=execution.pk, step_run_id=run.pk, delivery=DELIVERY)
    saga_finish(execution_id=execution.pk, delivery=DELIVERY)
    execution.refresh_from_db()
    return execution
