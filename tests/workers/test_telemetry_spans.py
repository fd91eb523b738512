"""Worker-side tracing: each flowplane.* task's span names the ids its arguments carry, and every
process that runs or sends tasks (pool processes, solo workers, beat) is instrumented."""
from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import workers  # noqa: F401  (registers the tasks)
from workers import tasks, telemetry


def finished_attributes(task, args=(), kwargs=None) -> dict:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("test").start_as_current_span("run"):
        telemetry._annotate_task(sender=task, task=task, args=args, kwargs=kwargs or {})
    provider.shutdown()
    return dict(exporter.get_finished_spans()[0].attributes)


def test_a_step_task_s_span_names_its_run_node_and_shard():
    assert finished_attributes(tasks.step, ("e-1", "ingest", 2, 3)) == {
        "flowplane.execution_id": "e-1", "flowplane.node": "ingest", "flowplane.shard": 2}


def test_a_compensation_s_span_names_its_run_and_step_run():
    assert finished_attributes(tasks.compensate, ("e-1",), {"step_run_id": 41}) == {
        "flowplane.execution_id": "e-1", "flowplane.step_run_id": 41}


def test_other_tasks_and_arguments_that_do_not_fit_are_left_alone():
    class Other:
        name = "celery.chord_unlock"

    assert finished_attributes(Other()) == {}
    assert finished_attributes(tasks.step, ("e", "n", 0, 1, False, "one too many")) == {}


@pytest.fixture
def instrumented(monkeypatch):
    calls = []
    monkeypatch.setattr(telemetry, "instrument_celery", lambda *args: calls.append(args))
    return calls


def test_beat_is_instrumented_under_its_own_name(instrumented):
    telemetry._instrument_beat(sender=None)
    assert instrumented == [("flowplane-beat",)]


@pytest.mark.parametrize("pool, instruments", [("solo", True), ("threads", True), ("prefork", False)])
def test_a_worker_running_tasks_in_its_own_process_is_instrumented_at_init(instrumented, pool, instruments):
    class Worker:
        pool_cls = pool

    telemetry._instrument_solo_worker(sender=Worker())
    assert bool(instrumented) is instruments
