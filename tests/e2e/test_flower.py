"""Flower watches the product's fleet: started against the test broker, its HTTP API lists the
running workers, the `flowplane.*` tasks they registered and the tasks of a run."""
from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from django.conf import settings

from controlplane.executions.models import ExecutionStatus
from tests.controlplane.executions.builders import edges, job, make_deployment
from tests.e2e.engine_support import HOSTS, fleet, run_to_end  # noqa: F401  (fixtures)
from tests.e2e.harness import REPO_ROOT, database_url, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

CREDENTIALS = "flower:flower-test-password"
ENGINE_TASKS = {"flowplane.step", "flowplane.merge", "flowplane.barrier", "flowplane.finish", "flowplane.saga",
                "flowplane.compensate", "flowplane.saga_finish"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Flower:
    def __init__(self, process: subprocess.Popen, url: str, log_path):
        self.process, self.url, self.log_path = process, url, log_path

    def get(self, path: str):
        """GET a Flower API path with the basic-auth credentials; the decoded JSON, or None while
        Flower does not answer yet."""
        if self.process.poll() is not None:
            raise RuntimeError(f"flower exited early:\n{self.log_path.read_text(errors='replace')[-4000:]}")
        request = urllib.request.Request(self.url + path, headers={
            "Authorization": "Basic " + base64.b64encode(CREDENTIALS.encode()).decode()})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.loads(response.read())
        except (urllib.error.URLError, ConnectionError):
            return None

    def status_without_credentials(self, path: str) -> int:
        try:
            with urllib.request.urlopen(self.url + path, timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code


@pytest.fixture
def flower(redis_test_db, tmp_path):
    """`celery -A workers flower` on a free port against the test broker, behind basic auth;
    stopped by its process id."""
    port = free_port()
    log_path = tmp_path / "flower.log"
    env = {**os.environ, "DATABASE_URL": database_url(), "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
           "CELERY_RESULT_BACKEND": settings.CELERY_RESULT_BACKEND}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workers", "flower", f"--port={port}", "--address=127.0.0.1",
             f"--broker={settings.CELERY_BROKER_URL}", f"--basic-auth={CREDENTIALS}"],  # as the README says
            cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    running = Flower(process, f"http://127.0.0.1:{port}", log_path)
    try:
        yield running
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def test_flower_finds_the_workers_their_flowplane_tasks_and_a_run_s_tasks(fleet, flower, project, owner):
    def both_workers():
        workers = flower.get("/api/workers?refresh=1") or {}
        return workers if set(HOSTS.values()) <= set(workers) else None

    workers = wait_until(both_workers, timeout=30, what="Flower to list both workers")
    assert flower.status_without_credentials("/api/workers") == 401
    for slug, hostname in HOSTS.items():
        registered = set(workers[hostname]["registered"])
        assert ENGINE_TASKS <= registered, sorted(ENGINE_TASKS - registered)
        queues = {queue["name"] for queue in workers[hostname]["active_queues"]}
        assert fleet.queue(slug) in queues

    # Flower turns the workers' task events on (every 5 s after it starts): a run before that is
    # invisible to it, so runs are started until one shows (bounded).
    deployment = make_deployment(project, [job("extract"), job("load", group="load")], edges(("extract", "load")),
                                 user=owner)

    def a_run_s_steps():
        execution = run_to_end(deployment, owner)
        assert execution.status == ExecutionStatus.SUCCEEDED

        def its_steps():
            tasks = flower.get("/api/tasks?taskname=flowplane.step") or {}
            mine = [t for t in tasks.values() if str(execution.pk) in (t.get("args") or "")]
            return mine if len(mine) == 2 and {t.get("state") for t in mine} == {"SUCCESS"} else None

        try:
            return wait_until(its_steps, timeout=3, what="the run's steps in Flower")
        except TimeoutError:
            return None

    steps = wait_until(a_run_s_steps, timeout=40, interval=0.5, what="a run's two steps in Flower's task list")
    assert {t["worker"] for t in steps} == set(HOSTS.values())
    assert {t["args"].split(",")[1].strip(" '") for t in steps} == {"extract", "load"}
    assert "flowplane.step" in flower.get("/api/task/types")["task-types"]
