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

