"""A stand-in OpenTelemetry collector for tests: OTLP/HTTP (protobuf) on 127.0.0.1, spans kept in memory.

Worker processes export to it as they would to a real collector (`OTEL_EXPORTER_OTLP_ENDPOINT`);
the test reads what arrived as plain `Span` records.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


@dataclass(frozen=True)
class Span:
    """One received (or locally exported) span, ids as lowercase hex."""

    name: str
    service: str
    trace_id: str
    span_id: str
    parent_id: str | None
    kind: str
    attributes: dict = field(hash=False)
    # (name, attributes) of the span's events: a fused task records each step it ran as one.
    events: tuple = field(default=(), hash=False)

    def attr(self, name: str):
        return self.attributes.get(name)


def _value(any_value):
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


def spans_of_request(request: ExportTraceServiceRequest) -> list[Span]:
    out = []
    for resource_spans in request.resource_spans:
        resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                out.append(Span(
                    name=span.name, service=resource.get("service.name", ""),
                    trace_id=span.trace_id.hex(), span_id=span.span_id.hex(),
                    parent_id=span.parent_span_id.hex() or None,
                    kind=span.SpanKind.Name(span.kind).removeprefix("SPAN_KIND_").lower(),
                    attributes={a.key: _value(a.value) for a in span.attributes},
                    events=tuple((event.name, {a.key: _value(a.value) for a in event.attributes})
                                 for event in span.events),
                ))
    return out


def span_of_sdk(span) -> Span:
    """The same record for a span of this process's SDK (an in-memory exporter's)."""
    parent = span.parent.span_id if span.parent is not None else None
    return Span(
        name=span.name, service=span.resource.attributes.get("service.name", ""),
        trace_id=f"{span.context.trace_id:032x}", span_id=f"{span.context.span_id:016x}",
        parent_id=f"{parent:016x}" if parent else None, kind=span.kind.name.lower(),
        attributes=dict(span.attributes or {}),
    )


class OtlpCollector:
    """`with OtlpCollector() as collector:` serves `collector.endpoint` until the block ends."""

    def __init__(self):
        self.spans: list[Span] = []
        self.lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    def _handler(self):
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path != "/v1/traces" or self.headers.get("Content-Encoding"):
                    self.send_response(404 if self.path != "/v1/traces" else 415)
                    self.end_headers()
                    return
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                with collector.lock:
                    collector.spans.extend(spans_of_request(request))
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

        return Handler

    def received(self) -> list[Span]:
        with self.lock:
            return list(self.spans)

    def __enter__(self) -> "OtlpCollector":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
