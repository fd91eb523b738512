"""Helpers for fleet tests (fixtures live in conftest.py)."""
from __future__ import annotations


def beat(hostname="w1@host", queues=("wg.acme.ingest",), **overrides):
    """A heartbeat with sensible defaults."""
    from controlplane.fleet.services import worker_heartbeat

    fields = dict(hostname=hostname, queues=list(queues), concurrency=2, pid=100, software_version="test")
    fields.update(overrides)
    return worker_heartbeat(**fields)
