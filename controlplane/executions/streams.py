"""Live events: a run's event store as Server-Sent Events, resumable and bounded.

`GET executions/{id}/events` with `Accept: text/event-stream` streams every event after
`Last-Event-ID` (or `?after=`) in seq order, one SSE message each (`id: <seq>`, `event: <type>`,
`data: <the event as JSON>`), and closes after the run's last event once it has ended (an
`event: end` message first). The web tier is gunicorn `gthread` (a few threads per process, see
`controlplane/gunicorn_conf.py`), so a stream must never hold a thread for long:

- a connection lasts at most `EVENTS_STREAM_MAX_S` (25 s: under gunicorn's `WEB_TIMEOUT_S` of 30 and
  the usual proxy idle timeouts): then a comment says to reconnect and the stream ends;
  EventSource reconnects by itself with `Last-Event-ID`, so nothing is missed;
- at most `EVENTS_STREAM_MAX_PER_PROCESS` streams per process (default 2 of its threads): one
  more is a 503 with `Retry-After`, so streams can never starve the API;
- a reconnect after the end of a finished run is a 204, which tells EventSource to stop.

It polls the store (`EVENTS_STREAM_POLL_S`) rather than listening for notifications: one indexed
read per poll, on the (execution, seq) unique index, and nothing to keep in sync with the writers.
"""
from __future__ import annotations

import json
import threading
import time
from typing import Iterator

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from rest_framework.renderers import BaseRenderer

from controlplane.executions.models import TERMINAL_EXECUTION_STATUSES, Execution, ExecutionEvent

BATCH = 500
KEEPALIVE_S = 15.0
_streams_lock = threading.Lock()
_open_streams = 0


class EventStreamRenderer(BaseRenderer):
    """`text/event-stream`: the view streams the events itself; anything else (an error body)
    is written as JSON."""

    media_type = "text/event-stream"
    format = "sse"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return json.dumps(data, cls=DjangoJSONEncoder).encode() if data is not None else b""


def setting(name: str, default: float) -> float:
    return float(getattr(settings, name, default))


def stream_slot() -> bool:
    """Take one of this process's stream slots; False when all are taken."""
    global _open_streams
    with _streams_lock:
        if _open_streams >= int(setting("EVENTS_STREAM_MAX_PER_PROCESS", 2)):
            return False
        _open_streams += 1
        return True


def release_slot() -> None:
    global _open_streams
    with _streams_lock:
        _open_streams = max(0, _open_streams - 1)


def message(event: ExecutionEvent) -> str:
    body = {"seq": event.seq, "type": event.type, "data": event.data, "created_at": event.created_at}
    return f"id: {event.seq}\nevent: {event.type}\ndata: {json.dumps(body, cls=DjangoJSONEncoder)}\n\n"


def has_more(execution_id, after: int) -> bool:
    """Whether a stream from `after` would send anything: the run is going, or events follow."""
    status = Execution.objects.filter(pk=execution_id).values_list("status", flat=True).first()
    return status not in TERMINAL_EXECUTION_STATUSES or ExecutionEvent.objects.filter(
        execution_id=execution_id, seq__gt=after).exists()


def event_stream(execution_id, *, after: int) -> Iterator[str]:
    """The SSE messages of the run from `after`; holds a slot taken with `stream_slot` and
    releases it however the stream ends (the client going away included)."""
    max_s, poll_s = setting("EVENTS_STREAM_MAX_S", 25.0), setting("EVENTS_STREAM_POLL_S", 0.5)
    started = beat = time.monotonic()
    last = after
    try:
        yield f"retry: {int(setting('EVENTS_STREAM_RETRY_MS', 1000))}\n\n"
        while True:
            # The status first: every event up to the one that ended the run committed with it,
            # so a read after a terminal status sees all of them.
            status = Execution.objects.filter(pk=execution_id).values_list("status", flat=True).first()
            events = list(ExecutionEvent.objects.filter(execution_id=execution_id, seq__gt=last)
                          .order_by("seq")[:BATCH])
            for event in events:
                yield message(event)
                last = event.seq
            if len(events) == BATCH:
                continue
            if status is None or status in TERMINAL_EXECUTION_STATUSES:
                yield f"id: {last}\nevent: end\ndata: {json.dumps({'status': status, 'last_seq': last})}\n\n"
                return
            now = time.monotonic()
            if now - started >= max_s:
                yield ": connection time is up; reconnect with Last-Event-ID\n\n"
                return
            if events:
                beat = now
            elif now - beat >= KEEPALIVE_S:
                yield ": keep-alive\n\n"
                beat = now
            time.sleep(poll_s)
    finally:
        release_slot()  # the connection itself is closed by request_finished when the response is
