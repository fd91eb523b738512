"""Fixtures of the executions unit tests: acme's groups with live worker rows (no processes).

Runs start on deployments; `make_deployment` (tests/controlplane/executions/builders.py) plans and
applies a literal graph onto these groups.
"""
from __future__ import annotations

import pytest

from tests.controlplane.executions.builders import make_group, make_live_worker


@pytest.fixture(autouse=True)
def _deploy_settings(settings, tmp_path):
    # Worker rows have no process behind them: rollout broadcasts get no reply, so do not wait long.
    settings.DEPLOY_CONTROL_TIMEOUT_S = 0.05
    settings.LANDING_STORE_URL = f"file://{tmp_path}/landing"


@pytest.fixture
def groups(company):
    ingest, load = make_group(company, "ingest"), make_group(company, "load")
    make_live_worker("ingest1@unit", ingest)
    make_live_worker("load1@unit", load)
    return {"ingest": ingest, "load": load}
