"""Fleet selectors: live workers, live capacity per group, the planner's snapshot, queue lookup."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from controlplane.fleet.selectors import fleet_snapshot, group_live_concurrency, groups_by_queue, live_workers
from controlplane.fleet.services import worker_group_create, worker_stopped
from .support import beat
from tests.factories import make_company

pytestmark = pytest.mark.django_db


@pytest.fixture
def fleet(ingest, transform, settings):
    """ingest: two live workers (2 + 3 slots), one stale, one stopped; transform: nothing live."""
    settings.WORKER_OFFLINE_AFTER_S = 20
    beat("a@h", concurrency=2, step_types=["noop", "http"])
    beat("b@h", concurrency=3, step_types=["noop", "jq"])
    beat("stale@h", concurrency=8, step_types=["python"], now=timezone.now() - timedelta(seconds=60))
    beat("stopped@h", concurrency=8, step_types=["delay"])
    worker_stopped(hostname="stopped@h")
    beat("t@h", queues=["wg.acme.transform"], now=timezone.now() - timedelta(seconds=60))


def test_live_workers_are_online_and_fresh(fleet, ingest, transform):
    assert sorted(w.hostname for w in live_workers(ingest)) == ["a@h", "b@h"]
    assert list(live_workers(transform)) == []


def test_group_live_concurrency_sums_live_workers_only(fleet, ingest, transform):
    assert group_live_concurrency(ingest) == 5
    assert group_live_concurrency(transform) == 0


def test_fleet_snapshot_per_group(fleet, company):
    snapshot = fleet_snapshot(company)
    assert snapshot == {
        "ingest": {"live_workers": 2, "concurrency": 5, "step_types": {"noop", "http", "jq"}, "queue": "wg.acme.ingest"},
        "transform": {"live_workers": 0, "concurrency": 0, "step_types": set(), "queue": "wg.acme.transform"},
    }


def test_fleet_snapshot_is_per_company(fleet):
    other = make_company("globex")
    worker_group_create(company=other, slug="ingest")
    assert fleet_snapshot(other) == {
        "ingest": {"live_workers": 0, "concurrency": 0, "step_types": set(), "queue": "wg.globex.ingest"}
    }


def test_groups_by_queue_finds_known_groups_only(ingest, transform):
    found = groups_by_queue(["wg.acme.ingest", "wg.acme.transform", "wg.acme.nope", "celery", "wg.x"])
    assert found == {"wg.acme.ingest": ingest, "wg.acme.transform": transform}
    assert groups_by_queue([]) == {}
