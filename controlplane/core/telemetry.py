"""OpenTelemetry for every process of the product: which exporter, the tracer provider, the web side.

What is exported is decided by the environment, the same way in the web, the workers and beat:

- `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) set: spans go to that
  OTLP collector, batched (`OTEL_EXPORTER_OTLP_PROTOCOL`: `http/protobuf`, the default, or `grpc`;
  the exporters read the headers, timeouts and `OTEL_BSP_*` batching variables themselves);
- `FLOWPLANE_OTEL=console`: spans are printed on stdout as they end (the embedded default);
- neither: no tracer provider and no instrumentation at all, so tracing costs nothing.
`OTEL_SDK_DISABLED=true` turns everything off; `OTEL_SERVICE_NAME` overrides the process's name
(`flowplane-web`, `flowplane-worker`, `flowplane-beat`).

The trace of an API request continues through Celery: the web process is instrumented for Django
(a span per request) and for Celery's publishing side, which puts the request's trace context in
the headers of every task it publishes; workers and beat continue it (`workers.telemetry`).

Spans are exported by a background thread (the SDK's BatchSpanProcessor), so the web side is set
up in each gunicorn worker process, from `post_fork` (as the OpenTelemetry docs for gunicorn
prescribe), or from `controlplane.wsgi` when the app is served some other way (`manage.py
runserver`); `instrument_web` runs once per process.
"""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, Iterator, Mapping

# opentelemetry is imported only where tracing is used: settings import this module (through the
# log configuration), and every process, traced or not, would pay a few hundred ms for it.

_OFF = ("", "off", "0", "false", "no")
MODES = ("off", "console", "otlp")
OTLP_PROTOCOLS = ("http/protobuf", "grpc")

# bind_attempt_context's field names -> span attribute names
_SPAN_ATTRIBUTES = {
    "execution_id": "flowplane.execution_id",
    "node": "flowplane.node",
    "shard": "flowplane.shard",
    "attempt": "flowplane.attempt",
    "company_id": "flowplane.company_id",
    "group": "flowplane.worker_group",
    "step_run_id": "flowplane.step_run_id",
    "label": "flowplane.label",
}

_provider = None
_web_instrumented = False


def _env(name: str, environ: Mapping[str, str]) -> str:
    return (environ.get(name) or "").strip()


def telemetry_mode(environ: Mapping[str, str] | None = None) -> str:
    """`otlp`, `console` or `off`, from the environment; a FLOWPLANE_OTEL value that is none of
    these is an error naming the value."""
    environ = os.environ if environ is None else environ
    if _env("OTEL_SDK_DISABLED", environ).lower() == "true":
        return "off"
    requested = _env("FLOWPLANE_OTEL", environ).lower()
    if requested not in _OFF and requested not in MODES:
        raise ValueError(f"FLOWPLANE_OTEL={requested!r} is not supported; use one of {', '.join(MODES)}")
    if _env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", environ) or _env("OTEL_EXPORTER_OTLP_ENDPOINT", environ):
        return "otlp"
    return "off" if requested in _OFF else requested


def _otlp_exporter(environ: Mapping[str, str]):
    protocol = (_env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", environ) or _env("OTEL_EXPORTER_OTLP_PROTOCOL", environ)
                or "http/protobuf").lower()
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    elif protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    else:
        raise ValueError(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not supported; use one of "
                         f"{', '.join(OTLP_PROTOCOLS)}")
    return OTLPSpanExporter()  # endpoint, headers, timeout and compression from the OTEL_* variables


def build_provider(service_name: str, mode: str, environ: Mapping[str, str] | None = None):
    """A tracer provider for `mode` (`otlp` or `console`), named `service_name` unless
    OTEL_SERVICE_NAME says otherwise (the SDK reads it and OTEL_RESOURCE_ATTRIBUTES)."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor

    environ = os.environ if environ is None else environ
    attributes = {} if _env("OTEL_SERVICE_NAME", environ) else {"service.name": service_name}
    provider = TracerProvider(resource=Resource.create(attributes))
    if mode == "otlp":
        provider.add_span_processor(BatchSpanProcessor(_otlp_exporter(environ)))
    elif mode == "console":
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    else:
        raise ValueError(f"no exporter for telemetry mode {mode!r}")
    return provider


def configure(service_name: str):
    """The process's tracer provider, made and installed as the global one on the first call;
    None when tracing is off. Later calls in the same process return the same provider."""
    global _provider
    mode = telemetry_mode()
    if mode == "off":
        return None
    if _provider is not None:
        return _provider
    from opentelemetry import trace

    _provider = build_provider(service_name, mode)
    trace.set_tracer_provider(_provider)
    return _provider


def instrument_web(provider=None) -> bool:
    """Django request spans and Celery publish spans in this process; True if it did it now.

    `provider` (tests) replaces the one from the environment. Must run before Django builds its
    middleware chain (the instrumentor adds a middleware): `controlplane.wsgi` calls it first."""
    global _web_instrumented
    if _web_instrumented:
        return False
    provider = provider or configure("flowplane-web")
    if provider is None:
        return False
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
    from django.conf import settings
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.django import DjangoInstrumentor

    # Static files (WhiteNoise, behind the tracing middleware) would be a trace each, unless the
    # standard variables say which URLs to leave out.
    excluded = (_env("OTEL_PYTHON_DJANGO_EXCLUDED_URLS", os.environ) or _env("OTEL_PYTHON_EXCLUDED_URLS", os.environ)
                or "/" + settings.STATIC_URL.strip("/") + "/")

    DjangoInstrumentor().instrument(tracer_provider=provider, excluded_urls=excluded)
    CeleryInstrumentor().instrument(tracer_provider=provider)
    _web_instrumented = True
    return True


def uninstrument_web() -> None:
    """Undo `instrument_web` (tests)."""
    global _web_instrumented
    if not _web_instrumented:
        return
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.django import DjangoInstrumentor

    DjangoInstrumentor().uninstrument()
    CeleryInstrumentor().uninstrument()
    _web_instrumented = False


def annotate_span(fields: Mapping[str, Any]) -> None:
    """Put a run's ids (execution, node, shard, attempt, company, worker group) on the current span,
    and record them as a `flowplane.attempt` event too: a task that runs several steps keeps each
    step's ids in its events. Costs a dictionary lookup when tracing is off."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:  # never imported: no span can be recording
        return
    span = trace.get_current_span()
    if not span.is_recording():
        return
    attributes = {_SPAN_ATTRIBUTES[key]: value if isinstance(value, (str, bool, int, float)) else str(value)
                  for key, value in fields.items() if key in _SPAN_ATTRIBUTES and value is not None}
    if not attributes:
        return
    span.set_attributes(attributes)
    if "flowplane.attempt" in attributes:
        span.add_event("flowplane.attempt", attributes)


# The trace-context headers a published task carries (W3C Trace Context, the default propagator).
TRACE_HEADERS = ("traceparent", "tracestate")


@contextlib.contextmanager
def continued_trace(headers: Mapping[str, Any]) -> Iterator[None]:
    """Run the block in the trace that `headers` (a stored request's `traceparent`) name, so a task
    published again (a lost attempt's redelivery) stays in its run's trace; without such headers
    the block runs in the current context."""
    carrier = {name: headers[name] for name in TRACE_HEADERS if isinstance(headers.get(name), str)}
    if not carrier:
        yield
        return
    from opentelemetry import context, propagate

    token = context.attach(propagate.extract(carrier))
    try:
        yield
    finally:
        context.detach(token)
