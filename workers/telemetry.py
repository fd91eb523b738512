"""OpenTelemetry for workers: Celery task spans when `FLOWPLANE_OTEL` asks for them.

`FLOWPLANE_OTEL=console` prints spans to stdout (useful on the embedded default); unset or `off`
leaves tracing out entirely. The instrumentor must run in every pool process, after the fork, so
it hangs off `worker_process_init` (as the opentelemetry-instrumentation-celery docs require).
"""
from __future__ import annotations

import os

from celery.signals import worker_process_init

_instrumented = False


def telemetry_mode() -> str:
    return os.environ.get("FLOWPLANE_OTEL", "off").strip().lower()


def instrument_celery() -> bool:
    """Install a tracer provider and the Celery instrumentor once per process; True if it did."""
    global _instrumented
    mode = telemetry_mode()
    if _instrumented or mode in ("", "off", "0", "false"):
        return False
    if mode != "console":
        raise ValueError(f"FLOWPLANE_OTEL={mode!r} is not supported; use 'console' or 'off'")
    from opentelemetry import trace
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "flowplane-worker"}))
    provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(provider)
    CeleryInstrumentor().instrument()
    _instrumented = True
    return True


@worker_process_init.connect(weak=False)
def _instrument_pool_process(**kwargs) -> None:
    instrument_celery()
