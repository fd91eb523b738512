"""What each process exports (OTLP with an endpoint, the console on request, nothing otherwise),
and the run's ids on the span of the task that runs a step."""
from __future__ import annotations

import uuid

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from controlplane.core import telemetry

CLEAN = {"FLOWPLANE_OTEL": "", "OTEL_SDK_DISABLED": ""}


@pytest.mark.parametrize("environ, mode", [
    ({}, "off"),
    ({"FLOWPLANE_OTEL": "off"}, "off"),
    ({"FLOWPLANE_OTEL": " Console "}, "console"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, "otlp"),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, "otlp"),
    ({"FLOWPLANE_OTEL": "console", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, "otlp"),
    ({"FLOWPLANE_OTEL": "otlp"}, "otlp"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_SDK_DISABLED": "true"}, "off"),
])
def test_the_mode_follows_the_environment(environ, mode):
    assert telemetry.telemetry_mode(environ) == mode


def test_an_unknown_mode_is_an_error_naming_it_and_the_choices():
    with pytest.raises(ValueError, match="'jaeger'.*off, console, otlp"):
        telemetry.telemetry_mode({"FLOWPLANE_OTEL": "jaeger"})


def test_otlp_speaks_http_protobuf_unless_grpc_is_asked_for():
    http = telemetry._otlp_exporter({})
    grpc = telemetry._otlp_exporter({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    assert type(http).__module__ == "opentelemetry.exporter.otlp.proto.http.trace_exporter"
    assert type(grpc).__module__ == "opentelemetry.exporter.otlp.proto.grpc.trace_exporter"
    with pytest.raises(ValueError, match="'http/json'"):
        telemetry._otlp_exporter({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})


def test_the_service_is_named_after_the_process_unless_otel_service_name_says_otherwise(monkeypatch):
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    assert telemetry.build_provider("flowplane-web", "console").resource.attributes["service.name"] == "flowplane-web"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "web-eu-1")
    assert telemetry.build_provider("flowplane-web", "console").resource.attributes["service.name"] == "web-eu-1"


def test_nothing_is_set_up_when_tracing_is_off(monkeypatch):
    for name in ("FLOWPLANE_OTEL", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    assert telemetry.configure("flowplane-web") is None
    assert telemetry.instrument_web() is False


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("test"), exporter
    provider.shutdown()


def test_a_step_s_ids_go_on_the_current_span_and_in_an_attempt_event(spans):
    tracer, exporter = spans
    execution_id = uuid.uuid4()
    with tracer.start_as_current_span("run/flowplane.step"):
        telemetry.annotate_span({"execution_id": execution_id, "node": "ingest", "shard": 2, "attempt": 3,
                                 "company_id": 7, "group": "load", "unrelated": "x", "worker": None})
    span, = exporter.get_finished_spans()
    assert dict(span.attributes) == {
        "flowplane.execution_id": str(execution_id), "flowplane.node": "ingest", "flowplane.shard": 2,
        "flowplane.attempt": 3, "flowplane.company_id": 7, "flowplane.worker_group": "load",
    }
    event, = span.events
    assert event.name == "flowplane.attempt" and event.attributes["flowplane.node"] == "ingest"


def test_without_a_recording_span_annotating_does_nothing(spans):
    telemetry.annotate_span({"execution_id": "e", "attempt": 1})  # no span: no error


def test_the_log_context_of_an_attempt_reaches_the_span(spans):
    from controlplane.core.logs import bind_attempt_context, clear_task_context

    tracer, exporter = spans
    with tracer.start_as_current_span("run/flowplane.compensate"):
        bind_attempt_context(execution_id="e1", node="flight", shard=0, attempt=1, company_id=3, group="ingest")
        clear_task_context()
    assert exporter.get_finished_spans()[0].attributes["flowplane.worker_group"] == "ingest"


def test_gunicorn_sets_tracing_up_in_each_worker_after_the_fork(monkeypatch):
    from controlplane import gunicorn_conf

    calls = []
    monkeypatch.setattr(telemetry, "instrument_web", lambda: calls.append("web"))
    gunicorn_conf.post_fork(server=None, worker=None)
    assert calls == ["web"]



def test_the_web_traces_requests_but_not_static_files(monkeypatch):
    from django.test import Client

    monkeypatch.delenv("OTEL_PYTHON_DJANGO_EXCLUDED_URLS", raising=False)
    monkeypatch.delenv("OTEL_PYTHON_EXCLUDED_URLS", raising=False)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry.uninstrument_web()
    assert telemetry.instrument_web(provider=provider)
    try:
        client = Client()  # built after the instrumentor added its middleware
        assert client.get("/static/missing.css").status_code == 404
        assert client.get("/api/v1/companies").status_code == 401
    finally:
        telemetry.uninstrument_web()
    assert [s.name for s in exporter.get_finished_spans()] == ["GET api/v1/companies"]
