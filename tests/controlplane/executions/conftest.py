"""Fixtures of the executions unit tests: acme's groups with live worker rows (no processes)."""
from __future__ import annotations

import pytest

from tests.controlplane.executions.builders import make_group, make_live_worker


@pytest.fixture
def groups(company):
    ingest, load = make_group(company, "ingest"), make_group(company, "load")
    make_live_worker("ingest1@unit", ingest)
    make_live_worker("load1@unit", load)
    return {"ingest": ingest, "load": load}
