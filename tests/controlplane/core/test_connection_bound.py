"""The web holds at most WEB_CONCURRENCY x WEB_THREADS PostgreSQL connections, however many clients.

gunicorn (gthread) on the test database; 20 concurrent clients send 200 authenticated requests
while a sampler counts the web's backends in pg_stat_activity (tagged by application_name).
Django's runserver, which bin/run used before, opened one connection per request thread and let
20 clients exhaust max_connections.
"""
from __future__ import annotations

import os
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection
from rest_framework.authtoken.models import Token

from tests.e2e.harness import database_url
from tests.web_server import gunicorn

WEB_CONCURRENCY, WEB_THREADS = 2, 3
APPLICATION_NAME = "flowplane-web-bound-test"

pytestmark = pytest.mark.django_db(transaction=True)  # the server must see the token


@pytest.fixture(autouse=True)
def _postgresql_only():
    if connection.vendor != "postgresql":
        pytest.skip("counts PostgreSQL backends")


def web_backends() -> int:
    with connection.cursor() as cursor:
        cursor.execute("select count(*) from pg_stat_activity where application_name = %s", [APPLICATION_NAME])
        return cursor.fetchone()[0]


def test_twenty_concurrent_clients_use_a_bounded_number_of_connections(owner, company, tmp_path):
    token = Token.objects.create(user=owner).key
    env = {
        **os.environ,
        "DATABASE_URL": f"{database_url()}?application_name={APPLICATION_NAME}",
        "DATABASE_CONN_MAX_AGE": "60", "DEBUG": "0", "WEB_CONCURRENCY": str(WEB_CONCURRENCY),
        "WEB_THREADS": str(WEB_THREADS), "FLOWPLANE_VAR_DIR": str(tmp_path / "var"),
    }
    samples: list[int] = []
    stop = threading.Event()
    base = None

    def sample():
        while not stop.is_set():
            samples.append(web_backends())
            time.sleep(0.05)
        connection.close()

    def call(_):
        request = urllib.request.Request(f"{base}/api/v1/projects", headers={"Authorization": f"Token {token}"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except urllib.error.URLError as exc:
            return f"no answer: {exc.reason}"

    with gunicorn(env, tmp_path / "gunicorn.log") as base:
        assert call(None) == 200
        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            started = time.monotonic()
            with ThreadPoolExecutor(max_workers=20) as clients:
                statuses = list(clients.map(call, range(200)))
            elapsed = time.monotonic() - started
        finally:
            stop.set()
            sampler.join(timeout=10)
    assert statuses.count(200) == 200, {s: statuses.count(s) for s in set(statuses)}
    assert samples and max(samples) <= WEB_CONCURRENCY * WEB_THREADS, samples
    assert max(samples) >= 1  # the sampler sees the web's connections at all
    print(f"200 requests from 20 clients in {elapsed:.1f} s; web connections at most {max(samples)}")
