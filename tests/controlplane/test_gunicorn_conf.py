"""The gunicorn settings: sized from the environment, bounded in PostgreSQL connections, and
serving the control plane for real (a gunicorn process on a free loopback port)."""
from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def conf(**env) -> subprocess.CompletedProcess:
    code = "import controlplane.gunicorn_conf as c; print(c.workers, c.threads, c.worker_class, c.bind)"
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=60)


def test_defaults_are_a_process_per_core_with_four_threads():
    env = {k: "" for k in ("WEB_CONCURRENCY", "WEB_THREADS", "WEB_BIND")}
    out = conf(**env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(os.cpu_count()), "4", "gthread", "127.0.0.1:8000"]


def test_processes_times_threads_above_the_connection_limit_refuses_to_start():
    out = conf(WEB_CONCURRENCY="8", WEB_THREADS="8", WEB_DB_CONNECTION_LIMIT="32")
    assert out.returncode != 0
    assert "WEB_CONCURRENCY x WEB_THREADS = 8 x 8 = 64" in out.stderr and "WEB_DB_CONNECTION_LIMIT=32" in out.stderr


@pytest.mark.parametrize("value", ["0", "-1", "four", "2.5"])
def test_a_bad_size_names_the_variable(value):
    out = conf(WEB_THREADS=value)
    assert out.returncode != 0 and f"WEB_THREADS={value!r} is not a positive integer" in out.stderr


@pytest.mark.django_db(transaction=True)
def test_gunicorn_serves_the_api_with_these_settings(owner, tmp_path):
    """A real gunicorn on 127.0.0.1:0: an authenticated read answers 200, a missing token 401
    with its challenge, and a worker
    killed with SIGKILL is replaced."""
    from rest_framework.authtoken.models import Token

    from tests.e2e.harness import database_url, wait_until

    token, _ = Token.objects.get_or_create(user=owner)
    log = tmp_path / "gunicorn.log"
    env = {**os.environ, "DATABASE_URL": database_url(), "WEB_BIND": "127.0.0.1:0", "WEB_CONCURRENCY": "1",
           "WEB_THREADS": "2"}
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "python:controlplane.gunicorn_conf",
                                 "controlplane.wsgi"], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        def port():
            assert proc.poll() is None, log.read_text()
            text = log.read_text()
            match = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", text)
            return match and "Booting worker" in text and int(match.group(1))

        listening = wait_until(port, timeout=60, what="gunicorn to listen")
        deadline = time.monotonic() + 30
        while True:  # the worker may still be importing Django
            conn = http.client.HTTPConnection("127.0.0.1", listening, timeout=10)
            try:
                conn.request("GET", "/api/v1/executions", headers={"Authorization": f"Token {token.key}"})
                response = conn.getresponse()
                break
            except ConnectionError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        assert response.status == 200 and json.loads(response.read())["results"] == []
        conn.request("GET", "/api/v1/executions")  # the same keep-alive connection
        refused = conn.getresponse()
        assert refused.status == 401 and json.loads(refused.read())["error"] == "not_authenticated"
        assert refused.headers["WWW-Authenticate"].startswith("Token")

        # A worker killed outright (OOM, kill -9) is replaced by the master; the API answers again.
        worker_pid = int(re.findall(r"Booting worker with pid: (\d+)", log.read_text())[-1])
        os.kill(worker_pid, signal.SIGKILL)
        wait_until(lambda: log.read_text().count("Booting worker") >= 2, timeout=60, what="a replacement worker")
        deadline = time.monotonic() + 30
        while True:
            fresh = http.client.HTTPConnection("127.0.0.1", listening, timeout=10)
            try:
                fresh.request("GET", "/api/v1/executions", headers={"Authorization": f"Token {token.key}"})
                again = fresh.getresponse()
                break
            except ConnectionError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        assert again.status == 200
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
