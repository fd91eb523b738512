"""The web holds at most WEB_CONCURRENCY x WEB_THREADS PostgreSQL connections, however many clients.

gunicorn (gthread) on the test database; 20 concurrent clients send 200 authenticated requests
while a sampler counts the web's backends in pg_stat_activity (tagged by application_name).
Django's runserver, which bin/run used before, opened one connection per request thread and let
20 clients exhaust max_connections.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.db import connection
from rest_framework.authtoken.models import Token

from tests.e2e.harness import database_url

REPO_ROOT = Path(__file__).resolve().parents[3]
WEB_CONCURRENCY, WEB_THREADS = 2, 3
APPLICATION_NAME = "flowplane-web-bound-test"

pytestmark = pytest.mark.django_db(transaction=True)  # the server must see the token


@pytest.fixture(autouse=True)
def _postgresql_only():
    if connection.vendor != "postgresql":
        pytest.skip("counts PostgreSQL backends")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def web_backends() -> int:
    with connection.cursor() as cursor:
        cursor.execute("select count(*) from pg_stat_activity where application_name = %s", [APPLICATION_NAME])
        return cursor.fetchone()[0]


def test_twenty_concurrent_clients_use_a_bounded_number_of_connections(owner, company, tmp_path):
    token = Token.objects.create(user=owner).key
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"{database_url()}?application_name={APPLICATION_NAME}",
        "DATABASE_CONN_MAX_AGE": "60", "DEBUG": "0", "WEB_CONCURRENCY": str(WEB_CONCURRENCY),
        "WEB_THREADS": str(WEB_THREADS), "FLOWPLANE_VAR_DIR": str(tmp_path / "var"),
    }
    log = open(tmp_path / "gunicorn.log", "wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "python:controlplane.gunicorn_conf", "--bind", f"127.0.0.1:{port}"],
        cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    samples: list[int] = []
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            samples.append(web_backends())
            time.sleep(0.05)
        connection.close()

    def call(_):
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/projects",
                                         headers={"Authorization": f"Token {token}"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except urllib.error.URLError as exc:
            return f"no answer: {exc.reason}"

    try:
        deadline = time.monotonic() + 30
        while call(None) != 200:
            assert server.poll() is None, (tmp_path / "gunicorn.log").read_text()
            assert time.monotonic() < deadline, "gunicorn did not answer within 30 s"
            time.sleep(0.2)
        sampler = threading.Thread(target=sample)
        sampler.start()
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=20) as clients:
            statuses = list(clients.map(call, range(200)))
        elapsed = time.monotonic() - started
        stop.set()
        sampler.join(timeout=10)
    finally:
        stop.set()
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=5)
        log.close()
    assert statuses.count(200) == 200, {s: statuses.count(s) for s in set(statuses)}
    assert samples and max(samples) <= WEB_CONCURRENCY * WEB_THREADS, samples
    assert max(samples) >= 1  # the sampler sees the web's connections at all
    print(f"200 requests from 20 clients in {elapsed:.1f} s; web connections at most {max(samples)}")
