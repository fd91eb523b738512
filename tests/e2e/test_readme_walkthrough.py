"""The README's "Using it" walk-through, run exactly as written against a live server and workers.

The commands are the ```bash block between `<!-- walkthrough -->` and `<!-- /walkthrough -->` in
README.md. Each request in it states its expected HTTP status (`expect 201 ...`) and stops the
script otherwise, so this test fails whenever a command does not answer as the README says. The
server (`manage.py runserver --noreload` on a free port) and the control-plane worker stand in for
what `bin/run` leaves running; both, and the worker the walk-through starts itself, run against
the test database and the test's Redis database and are stopped by process group.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings

from tests.e2e.harness import REPO_ROOT, database_url, wait_until

WALKTHROUGH = re.compile(r"<!-- walkthrough -->\s*```bash\n(.*?)^```\s*<!-- /walkthrough -->", re.S | re.M)
RUN_TIMEOUT_S = 300


def walkthrough() -> str:
    blocks = WALKTHROUGH.findall((REPO_ROOT / "README.md").read_text())
    assert len(blocks) == 1, "README.md needs one ```bash block between <!-- walkthrough --> and <!-- /walkthrough -->"
    return blocks[0]


def requests_of(script: str) -> list[str]:
    """The lines of the script that name an API URL (the helpers take theirs as arguments)."""
    lines = [line for line in script.splitlines() if "$BASE" in line and not line.lstrip().startswith(("#", "BASE="))]
    assert len(lines) > 20, "the walk-through calls the API through $BASE"
    return lines


class TestTheWalkthroughAsText:
    def test_every_request_states_the_status_it_expects(self):
        for line in requests_of(walkthrough()):
            assert "curl" not in line, f"use `expect STATUS ...` so the status is checked: {line}"

    def test_no_id_is_hard_coded(self):
        for line in requests_of(walkthrough()):
            assert not re.search(r"/api/v1/[a-z-]+/\d", line), f"read the id from a response: {line}"
            assert not re.search(r'"(company|project|workflow)": \d', line), f"read the id from a response: {line}"

    def test_it_uses_a_tenant_of_its_own_not_the_demos(self):
        script = walkthrough()
        assert "--company acme" in script and "wg.acme." in script
        assert "--company demo" not in script and "wg.demo." not in script


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2)
    except urllib.error.HTTPError:
        return True  # any HTTP answer: the server is up
    except OSError:
        return False
    return True


def stop_group(pgid: int, timeout: float = 20) -> None:
    """SIGTERM the process group we started, then SIGKILL what is left; bounded."""
    for sig, grace in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)


@pytest.fixture
def services_env(tmp_path):
    """What the server, the workers and the walk-through's own commands share: the test's database
    and Redis database, files under tmp_path, quick heartbeats."""
    var = tmp_path / "var"
    var.mkdir()
    return {
        **os.environ,
        "DATABASE_URL": database_url(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "CELERY_RESULT_BACKEND": settings.CELERY_RESULT_BACKEND,
        "FLOWPLANE_VAR_DIR": str(var),
        "LANDING_STORE_URL": f"file://{var / 'landing'}",
        "WORKER_HEARTBEAT_INTERVAL_S": "1",
        "TMPDIR": str(tmp_path),
        "PYTHONUNBUFFERED": "1",
    }


@pytest.fixture
def server(services_env, tmp_path, redis_test_db, transactional_db, start_worker):
    """A live control plane on a free port, and the control-plane worker `bin/run` would run."""
    start_worker(["controlplane"], "control@readme", extra_env={"WORKER_HEARTBEAT_INTERVAL_S": "1"})
    port = free_port()
    log = open(tmp_path / "server.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
        cwd=REPO_ROOT, env=services_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    log.close()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: process.poll() is not None or answers(f"{base}/api/v1/schema/"), timeout=60,
                   what="the server")
        assert process.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
        yield base
    finally:
        stop_group(process.pid)


def test_the_walkthrough_runs_as_written(server, services_env, tmp_path):
    from controlplane.deployments.models import Deployment
    from controlplane.executions.models import Execution

    script = tmp_path / "walkthrough.sh"
    script.write_text(walkthrough())
    process = subprocess.Popen(
        ["bash", str(script)], cwd=REPO_ROOT, env={**services_env, "BASE": server},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        stop_group(process.pid)
        output, _ = process.communicate(timeout=10)
        pytest.fail(f"the walk-through took over {RUN_TIMEOUT_S}s:\n{output[-6000:]}")
    finally:
        stop_group(process.pid)  # the worker it started in the background, if a step failed before `kill`

    worker_log = Path(tmp_path / "acme-worker.log")
    assert process.returncode == 0, (
        f"walk-through failed (exit {process.returncode}):\n{output[-6000:]}\n--- acme worker log ---\n"
        f"{worker_log.read_text()[-3000:] if worker_log.exists() else '(none)'}"
    )
    # Then what it printed is what the README promises, and the database agrees
    assert "+ fetch  (python on ingest)" in output  # the first plan's text
    assert "replicas: 2 -> 3" in output and "Plan: 0 to add, 1 to change, 0 to destroy, 0 to move" in output
    deployment = Deployment.objects.get(workflow__slug="orders", workflow__project__company__slug="acme")
    assert (deployment.environment, deployment.version.number, deployment.status) == ("prod", 1, "active")
    runs = Execution.objects.filter(deployment=deployment)
    assert runs.count() == 2 and runs.filter(status="succeeded").exists()
