"""What a worker records of the delivery it runs.

A step's Celery request is captured when it is claimed (`request_fields`), so that if its worker
dies the control plane can publish the very same task again
(`controlplane.executions.dispatch.republish`): same task id, same chain, chord, group and
callbacks, to the same queue, as Celery's own `Task.retry` does; doing it from stored fields
works from any process.
"""
from __future__ import annotations

import os
from typing import Any

from controlplane.executions.services import Delivery

REQUEST_FIELDS = (
    "id", "task", "args", "kwargs", "root_id", "parent_id", "group", "group_index", "chord", "chain",
    "callbacks", "errbacks", "timelimit", "retries", "reply_to", "shadow", "origin", "delivery_info",
    "replaced_task_nesting", "ignore_result",
    "traceparent", "tracestate",  # the run's trace, continued by a redelivery (controlplane.core.telemetry)
)


def request_fields(request) -> dict[str, Any]:
    """The JSON-safe part of a Celery request needed to publish the same task again."""
    out = {}
    for name in REQUEST_FIELDS:
        value = getattr(request, name, None)
        if name == "delivery_info" and value:
            value = {k: value.get(k) for k in ("exchange", "routing_key", "priority")}
        if isinstance(value, tuple):
            value = list(value)
        out[name] = value
    return out


def delivery_of(task) -> Delivery:
    """What the services record about the delivery being executed."""
    request = task.request
    info = request.delivery_info or {}
    return Delivery(
        task_id=request.id or "",
        worker=request.hostname or "",
        queue=info.get("routing_key") or "",
        retries=request.retries or 0,
        request=request_fields(request),
        pid=os.getpid(),
    )
