"""Fleet fixtures: groups of `company` (acme) and a clean hook list per test."""
from __future__ import annotations

import pytest

from controlplane.fleet import hooks
from controlplane.fleet.services import worker_group_create
from tests.signals import only_receiver


@pytest.fixture
def ingest(company):
    return worker_group_create(company=company, slug="ingest", name="Ingest")


@pytest.fixture
def transform(company):
    return worker_group_create(company=company, slug="transform")


@pytest.fixture
def offline_calls():
    """Record what `workers_offline` sends, with no other receiver connected meanwhile (these tests
    have no runs to recover)."""
    calls: list[list[str]] = []

    def record(sender, hostnames, **kwargs):
        calls.append(hostnames)

    with only_receiver(hooks.workers_offline, record):
        yield calls
