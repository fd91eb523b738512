"""Fleet fixtures: groups of `company` (acme) and a clean hook list per test."""
from __future__ import annotations

import pytest

from controlplane.fleet import hooks
from controlplane.fleet.services import worker_group_create


@pytest.fixture
def ingest(company):
    return worker_group_create(company=company, slug="ingest", name="Ingest")


@pytest.fixture
def transform(company):
    return worker_group_create(company=company, slug="transform")


@pytest.fixture
def offline_calls():
    """Record what `on_workers_offline` hooks receive; the hook list is restored afterwards."""
    saved = list(hooks.on_workers_offline)
    calls: list[list[str]] = []
    hooks.on_workers_offline[:] = [calls.append]
    yield calls
    hooks.on_workers_offline[:] = saved


def beat(hostname="w1@host", queues=("wg.acme.ingest",), **overrides):
    """A heartbeat with sensible defaults."""
    from controlplane.fleet.services import worker_heartbeat

    fields = dict(hostname=hostname, queues=list(queues), concurrency=2, pid=100, software_version="test")
    fields.update(overrides)
    return worker_heartbeat(**fields)
