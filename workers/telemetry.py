"""OpenTelemetry for workers and beat: a span per Celery task, continuing the publisher's trace.

What is exported (OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, stdout with
`FLOWPLANE_OTEL=console`, nothing otherwise) is decided by `controlplane.core.telemetry`, as in
the web process. The instrumentor must run in every process that runs tasks, after the fork, so it
hangs off `worker_process_init` for the prefork pool (as the opentelemetry-instrumentation-celery
docs require), off `worker_init` for pools that run tasks in the worker's own process (solo,
threads), and off `beat_init` for beat, whose published tasks then start traces of their own.

Each `flowplane.*` task's span carries the ids its arguments name (execution, node, shard, step
run); the step's claim adds attempt, company and worker group (`controlplane.core.logs.
bind_attempt_context` -> `telemetry.annotate_span`).
"""
from __future__ import annotations

import inspect

from celery.signals import beat_init, task_prerun, worker_init, worker_process_init

from controlplane.core.telemetry import annotate_span, configure, telemetry_mode

_instrumented = False
# task argument name -> annotate_span field
_ARGUMENTS = {"execution_id": "execution_id", "node_id": "node", "shard": "shard", "step_run_id": "step_run_id",
              "label": "label"}
_parameters: dict[str, inspect.Signature] = {}

__all__ = ["instrument_celery", "telemetry_mode"]


def instrument_celery(service_name: str = "flowplane-worker") -> bool:
    """Install the tracer provider and the Celery instrumentor once per process; True if it did."""
    global _instrumented
    if _instrumented:
        return False
    provider = configure(service_name)
    if provider is None:
        return False
    from opentelemetry.instrumentation.celery import CeleryInstrumentor

    CeleryInstrumentor().instrument(tracer_provider=provider)
    # Connected after the instrumentor's own task_prerun handler, so its span is the current one.
    task_prerun.connect(_annotate_task, weak=False)
    _instrumented = True
    return True


def _annotate_task(sender=None, task=None, args=(), kwargs=None, **_) -> None:
    task = task or sender
    name = getattr(task, "name", "") or ""
    if not name.startswith("flowplane."):
        return
    signature = _parameters.get(name)
    if signature is None:
        signature = _parameters[name] = inspect.signature(task.run)
    try:
        bound = signature.bind_partial(*(args or ()), **(kwargs or {})).arguments
    except TypeError:  # a message whose arguments do not fit: the task itself will say so
        return
    annotate_span({field: bound[arg] for arg, field in _ARGUMENTS.items() if arg in bound})


def _runs_tasks_in_own_process(worker) -> bool:
    from celery import concurrency
    from celery.concurrency.prefork import TaskPool

    pool = worker.pool_cls
    if isinstance(pool, str):
        pool = concurrency.get_implementation(pool)
    return not (isinstance(pool, type) and issubclass(pool, TaskPool))


@worker_process_init.connect(weak=False)
def _instrument_pool_process(**kwargs) -> None:
    instrument_celery()


@worker_init.connect(weak=False)
def _instrument_solo_worker(sender=None, **kwargs) -> None:
    if sender is not None and _runs_tasks_in_own_process(sender):
        instrument_celery()


@beat_init.connect(weak=False)
def _instrument_beat(**kwargs) -> None:
    instrument_celery("flowplane-beat")
