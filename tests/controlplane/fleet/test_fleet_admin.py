"""Fleet admin pages load for a superuser, with filters and search."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from .support import beat
from tests.factories import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):
    user = make_user("root", is_staff=True, is_superuser=True)
    client.force_login(user)
    return client


@pytest.mark.parametrize(
    "url",
    [
        "/admin/fleet/workergroup/",
        "/admin/fleet/workergroup/?q=ingest",
        "/admin/fleet/worker/",
        "/admin/fleet/worker/?live=yes",
        "/admin/fleet/worker/?live=no",
        "/admin/fleet/worker/?status__exact=offline",
        "/admin/fleet/worker/?q=acme",
    ],
)
def test_changelists_load(admin_client, ingest, url):
    beat("a@h")
    beat("old@h", now=timezone.now() - timedelta(hours=1))
    response = admin_client.get(url)
    assert response.status_code == 200


def test_changelist_shows_queue_live_count_and_heartbeat_age(admin_client, ingest):
    beat("a@h")
    beat("old@h", now=timezone.now() - timedelta(hours=1))
    groups = admin_client.get("/admin/fleet/workergroup/").content.decode()
    assert "wg.acme.ingest" in groups
    workers = admin_client.get("/admin/fleet/worker/?live=no").content.decode()
    assert "old@h" in workers and "(stale)" in workers and "a@h" not in workers


def test_change_pages_load(admin_client, ingest):
    worker = beat("a@h")
    assert admin_client.get(f"/admin/fleet/workergroup/{ingest.id}/change/").status_code == 200
    assert admin_client.get(f"/admin/fleet/worker/{worker.id}/change/").status_code == 200
    assert admin_client.get("/admin/fleet/workergroup/add/").status_code == 200
