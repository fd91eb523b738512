"""One trace from the API request that starts a run to its last step, its saga and compensations.

The test process plays the web control plane: Django and Celery's publishing side are instrumented
(`controlplane.core.telemetry.instrument_web`) with an in-memory exporter. The workers are real
`celery worker` processes that export over OTLP/HTTP to a stand-in collector on 127.0.0.1, as they
would to a real one when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from rest_framework.authtoken.models import Token

from controlplane.core import telemetry
from controlplane.executions.models import ExecutionStatus, StepRun
from tests.controlplane.executions.builders import edges, job, make_deployment
from tests.e2e.engine_support import fleet, wait_for_end  # noqa: F401  (fixtures)
from tests.e2e.harness import REPO_ROOT, database_url, wait_until
from tests.e2e.otlp_collector import OtlpCollector, span_of_sdk

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

STEP_ATTRIBUTES = ("flowplane.execution_id", "flowplane.node", "flowplane.shard", "flowplane.attempt",
                   "flowplane.worker_group", "flowplane.company_id")


@pytest.fixture
def collector(monkeypatch):
    """Workers started after this export their spans to a local collector, flushed every 100 ms."""
    with OtlpCollector() as running:
        monkeypatch.delenv("FLOWPLANE_OTEL", raising=False)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", running.endpoint)
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
        yield running


@pytest.fixture
def web_spans():
    """This process instrumented as the web control plane is, its spans kept in memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "flowplane-web"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry.uninstrument_web()
    assert telemetry.instrument_web(provider=provider)
    yield exporter
    telemetry.uninstrument_web()
    provider.shutdown()


def start_over_the_api(client, deployment) -> str:
    response = client.post("/api/v1/executions", {"deployment": deployment.pk, "input": {}}, format="json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


def spans_of_run(collector, web_spans, execution_id: str, *, until) -> tuple[list, list]:
    """(web spans, worker spans of the run), once `until(worker spans)` holds (bounded wait)."""
    def ready():
        spans = [s for s in collector.received() if s.attr("flowplane.execution_id") == execution_id]
        return spans if until(spans) else None

    worker = wait_until(ready, timeout=20, what="the workers' spans of the run at the collector")
    return [span_of_sdk(s) for s in web_spans.get_finished_spans()], worker


def assert_one_connected_trace(request, web, worker_spans, everything):
    """Every span of the run is in the request's trace, and its parents lead back to the request."""
    assert {s.trace_id for s in worker_spans} == {request.trace_id}
    by_id = {s.span_id: s for s in everything if s.trace_id == request.trace_id}
    for span in worker_spans:
        seen, current = [], span
        while current.parent_id is not None:
            assert current.parent_id in by_id, f"{current.name}'s parent is missing (after {seen})"
            seen.append(current.name)
            current = by_id[current.parent_id]
        assert current.span_id == request.span_id, f"{span.name} leads to {current.name}, not the request"


def step_records(spans) -> list[tuple]:
    """(span, the step's attributes) for every step the spans ran: a `flowplane.step` task's span
    attributes, or each `flowplane.attempt` event of a fused `flowplane.steps` task."""
    out = []
    for span in spans:
        if span.name == "run/flowplane.step":
            out.append((span, span.attributes))
        elif span.name == "run/flowplane.steps":
            out += [(span, attributes) for name, attributes in span.events if name == "flowplane.attempt"]
    return out


def the_request(web):
    requests = [s for s in web if s.kind == "server"]
    assert len(requests) == 1, [s.name for s in web]
    assert (requests[0].attr("http.method") or requests[0].attr("http.request.method")) == "POST"
    return requests[0]


def test_one_trace_runs_from_the_start_request_to_the_last_step_of_a_fan_out(
        collector, web_spans, fleet, project, company, owner, client_for):
    deployment = make_deployment(project, [
        job("refresh"),
        job("discover"),
        job("ingest", "python", group="load", replicas=3, config={"callable": "e2e.shard"}),
        job("related"),
        job("metrics", group="load"),
        job("load"),
    ], edges(("refresh", "discover"), ("discover", "ingest"), ("ingest", "related"), ("ingest", "metrics"),
             ("related", "load"), ("metrics", "load")), user=owner)

    execution_id = start_over_the_api(client_for(owner), deployment)
    assert wait_for_end(execution_id, timeout=30).status == ExecutionStatus.SUCCEEDED

    runs = StepRun.objects.filter(execution_id=execution_id, is_compensation=False)
    expected = {(run.node_id, run.shard) for run in runs}
    assert ("load", 0) in expected and {("ingest", 0), ("ingest", 1), ("ingest", 2)} <= expected

    def steps_in(spans):
        return {(step["flowplane.node"], step["flowplane.shard"]) for _, step in step_records(spans)}

    web, worker = spans_of_run(collector, web_spans, execution_id, until=lambda spans: steps_in(spans) >= expected)
    request = the_request(web)
    assert_one_connected_trace(request, web, worker, web + collector.received())

    # Every step says what it ran: the run, node, shard, attempt, worker group and company (a
    # step's own span, or an event of the fused task that ran it with its neighbours).
    steps = step_records(worker)
    assert any(span.name == "run/flowplane.steps" for span, _ in steps), "refresh -> discover run fused"
    for span, step in steps:
        assert all(step.get(name) is not None for name in STEP_ATTRIBUTES), step
        assert step["flowplane.company_id"] == company.pk and step["flowplane.attempt"] == 1
        assert span.service == "flowplane-worker" and span.kind == "consumer"
    groups = {step["flowplane.node"]: step["flowplane.worker_group"] for _, step in steps}
    assert groups == {"refresh": "ingest", "discover": "ingest", "ingest": "load", "related": "ingest",
                      "metrics": "load", "load": "ingest"}
    # The request published the canvas: its publish spans are the request's children.
    published = [s for s in web if s.name.startswith("apply_async/flowplane.")]
    assert published and all(s.parent_id == request.span_id for s in published)
    # ...and the fan-out's shards ran on the load worker, each in its own span.
    assert sorted(step["flowplane.shard"] for _, step in steps if step["flowplane.node"] == "ingest") == [0, 1, 2]


def test_a_retry_the_saga_and_its_compensations_continue_the_request_s_trace(
        collector, web_spans, fleet, project, owner, client_for):
    undo = {"type": "noop"}
    deployment = make_deployment(project, [
        job("flight", compensate=undo),
        job("hotel", group="load", compensate=undo),
        job("car", "fail", retry={"max_attempts": 2, "initial_delay_s": 0.05, "max_delay_s": 0.1, "jitter": False}),
    ], edges(("flight", "hotel"), ("hotel", "car")), user=owner)

    execution_id = start_over_the_api(client_for(owner), deployment)
    assert wait_for_end(execution_id, timeout=30).status == ExecutionStatus.COMPENSATED

    def complete(spans):
        names = [s.name for s in spans]
        tries = [s for s in spans if s.name == "run/flowplane.step" and s.attr("flowplane.node") == "car"]
        return (names.count("run/flowplane.compensate") == 2 and "run/flowplane.saga" in names
                and "run/flowplane.saga_finish" in names and len(tries) == 2)

    web, worker = spans_of_run(collector, web_spans, execution_id, until=complete)
    request = the_request(web)
    assert_one_connected_trace(request, web, worker, web + collector.received())
    compensated = {s.attr("flowplane.node"): s.attr("flowplane.worker_group")
                   for s in worker if s.name == "run/flowplane.compensate"}
    assert compensated == {"flight": "ingest", "hotel": "load"}
    # The failing step's retry is a task of its own, still in the trace, one attempt further.
    tries = sorted(s.attr("flowplane.attempt") for s in worker
                   if s.name == "run/flowplane.step" and s.attr("flowplane.node") == "car")
    assert tries == [1, 2]


@pytest.fixture
def gunicorn_web(collector, tmp_path):
    """The web control plane as production serves it (gunicorn, `controlplane.gunicorn_conf`) on
    the test database, exporting its spans to the collector; stopped by its process id."""
    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url(), "WEB_CONCURRENCY": "1", "WEB_THREADS": "2",
           "FLOWPLANE_VAR_DIR": str(tmp_path / "var")}
    log_path = tmp_path / "gunicorn.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "python:controlplane.gunicorn_conf", "--bind", f"127.0.0.1:{port}"],
            cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield f"http://127.0.0.1:{port}", server, log_path
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_under_gunicorn_the_web_exports_its_request_spans_over_otlp_and_workers_continue_them(
        collector, gunicorn_web, fleet, project, owner):
    base, server, log_path = gunicorn_web
    deployment = make_deployment(project, [job("extract"), job("load", group="load")], edges(("extract", "load")),
                                 user=owner)
    token = Token.objects.get_or_create(user=owner)[0].key

    def start():
        assert server.poll() is None, log_path.read_text(errors="replace")[-4000:]
        request = urllib.request.Request(f"{base}/api/v1/executions", method="POST",
                                         data=json.dumps({"deployment": deployment.pk}).encode(),
                                         headers={"Authorization": f"Token {token}",
                                                  "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.loads(response.read()) if response.status == 201 else None
        except urllib.error.URLError:  # not listening yet
            return None

    execution_id = wait_until(start, timeout=30, interval=0.2, what="gunicorn to start a run")["id"]
    assert wait_for_end(execution_id, timeout=30).status == ExecutionStatus.SUCCEEDED

    def the_whole_run():
        spans = collector.received()
        steps = [s for s in spans if s.name == "run/flowplane.step" and s.attr("flowplane.execution_id") == execution_id]
        web = [s for s in spans if s.service == "flowplane-web" and s.kind == "server"]
        return (web, steps) if len(steps) == 2 and web else None

    web, steps = wait_until(the_whole_run, timeout=20, what="the web's and the workers' spans at the collector")
    request = next(s for s in web if s.trace_id == steps[0].trace_id)
    assert request.name.startswith("POST") and "executions" in request.name
    assert_one_connected_trace(request, web, steps, collector.received())


def test_a_redelivered_task_is_published_in_the_trace_its_stored_request_names(redis_test_db):
    """A lost attempt's stored request keeps its `traceparent`; publishing it again (recovery)
    continues that trace instead of the recovering process's own."""
    from celery.app.task import Context
    from opentelemetry.instrumentation.celery import CeleryInstrumentor

    from controlplane.executions.dispatch import republish
    from workers.routing import request_fields

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    trace_id, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    stored = request_fields(Context({"id": "lost-attempt-1", "task": "flowplane.step", "args": ["e", "n", 0, 1],
                                     "kwargs": {}, "traceparent": f"00-{trace_id}-{parent}-01"}))
    assert stored["traceparent"] == f"00-{trace_id}-{parent}-01"

    CeleryInstrumentor().uninstrument()
    CeleryInstrumentor().instrument(tracer_provider=provider)
    try:
        with tracer.start_as_current_span("run/flowplane.sweep"):
            republish(stored, "tracing-test-redelivery")
    finally:
        CeleryInstrumentor().uninstrument()
    published = [s for s in exporter.get_finished_spans() if s.name == "apply_async/flowplane.step"]
    assert published, [s.name for s in exporter.get_finished_spans()]
    assert f"{published[0].context.trace_id:032x}" == trace_id
    assert f"{published[0].parent.span_id:016x}" == parent
    redis_test_db.delete("tracing-test-redelivery")
