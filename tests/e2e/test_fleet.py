"""Fleet end to end: real `celery worker` processes heartbeat into PostgreSQL.

Each test starts its own worker on `wg.acme.ingest` with a 0.5 s heartbeat and bounds every wait.
"""
from __future__ import annotations

import pytest

from controlplane.fleet import hooks
from controlplane.fleet.models import Worker, WorkerStatus
from controlplane.fleet.services import worker_group_create, workers_mark_offline
from tests.e2e.harness import wait_until
from workers.bootsteps import advertised_step_types

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

FAST = {"WORKER_HEARTBEAT_INTERVAL_S": "0.5"}


@pytest.fixture
def ingest(company):
    return worker_group_create(company=company, slug="ingest")


@pytest.fixture
def control():
    from workers.celery import app

    return app.control


def registered(hostname: str, **conditions):
    """The worker's row once it exists and matches every `field=value` condition, else None."""
    worker = Worker.objects.filter(hostname=hostname).first()
    if worker is None:
        return None
    for field, expected in conditions.items():
        if getattr(worker, field) != expected:
            return None
    return worker


def test_worker_registers_with_its_group_and_keeps_beating(start_worker, ingest):
    # given a group; when a worker for its queue starts
    proc = start_worker(["wg.acme.ingest"], "fleet-reg@localhost", concurrency=2, extra_env=FAST)

    # then its row appears with hostname, group, concurrency, pid and consumed queue
    worker = wait_until(
        lambda: registered("fleet-reg@localhost", active_consumers=["wg.acme.ingest"]),
        timeout=20, what="the worker's first heartbeat with its consumer running",
    )
    assert list(worker.groups.all()) == [ingest]
    assert worker.queues == ["wg.acme.ingest"]
    assert worker.concurrency == 2 and worker.pid == proc.pid
    assert worker.status == WorkerStatus.ONLINE and worker.is_live
    assert worker.software_version.startswith("flowplane/")
    assert worker.step_types == advertised_step_types()  # the step registry's names, when importable

    # and it keeps beating
    first = worker.last_heartbeat
    wait_until(
        lambda: Worker.objects.get(pk=worker.pk).last_heartbeat > first, timeout=10, what="a second heartbeat"
    )


def test_killed_worker_goes_offline_and_hook_runs(start_worker, ingest, settings):
    settings.WORKER_OFFLINE_AFTER_S = 2.0
    seen: list[list[str]] = []

    def record(sender, hostnames, **kwargs):
        seen.append(hostnames)

    hooks.workers_offline.connect(record, weak=False, dispatch_uid="test.seen")
    try:
        # given a live worker
        proc = start_worker(["wg.acme.ingest"], "fleet-kill@localhost", extra_env=FAST)
        wait_until(lambda: registered("fleet-kill@localhost"), timeout=20, what="registration")
        assert workers_mark_offline() == []

        # when it is killed with SIGKILL (no shutdown code runs)
        proc.kill9()

        # then its heartbeat goes stale and the sweep marks it offline and tells the hooks
        marked = wait_until(lambda: workers_mark_offline(), timeout=15, interval=0.25, what="the sweep to mark it")
        assert marked == ["fleet-kill@localhost"]
        worker = Worker.objects.get(hostname="fleet-kill@localhost")
        assert worker.status == WorkerStatus.OFFLINE and not worker.is_live
        assert seen == [["fleet-kill@localhost"]]
    finally:
        hooks.workers_offline.disconnect(dispatch_uid="test.seen")


def test_broadcast_artifacts_reach_the_worker_and_its_heartbeat(start_worker, ingest, control):
    hostname = "fleet-art@localhost"
    start_worker(["wg.acme.ingest"], hostname, extra_env=FAST)
    wait_until(lambda: registered(hostname, active_consumers=["wg.acme.ingest"]), timeout=20, what="registration")

    # when the control plane broadcasts an artifact to the worker
    artifact = {"job_id": "harvest/fetch", "digest": "sha256:abc", "spec": {"type": "noop"}}
    replies = control.broadcast(
        "flowplane_load_artifacts", arguments={"artifacts": [artifact]}, destination=[hostname], reply=True, timeout=5
    )

    # then the worker replies with the digest and its next heartbeat reports it
    assert replies == [{hostname: {
        "ok": True, "hostname": hostname, "loaded": {"harvest/fetch": "sha256:abc"},
        "artifacts": {"harvest/fetch": "sha256:abc"},
    }}]
    wait_until(
        lambda: registered(hostname, loaded_artifacts={"harvest/fetch": "sha256:abc"}),
        timeout=10, what="the heartbeat to report the digest",
    )
    (status,) = control.broadcast("flowplane_status", destination=[hostname], reply=True, timeout=5)
    assert status[hostname]["loaded_artifacts"] == {"harvest/fetch": "sha256:abc"}
    assert status[hostname]["queues"] == ["wg.acme.ingest"]

    # and unloading empties the cache and the reported digests
    (reply,) = control.broadcast(
        "flowplane_unload_artifacts", arguments={"job_ids": ["harvest/fetch"]}, destination=[hostname],
        reply=True, timeout=5,
    )
    assert reply[hostname]["unloaded"] == ["harvest/fetch"] and reply[hostname]["artifacts"] == {}
    wait_until(lambda: registered(hostname, loaded_artifacts={}), timeout=10, what="the digest to disappear")


def test_cancelled_consumer_is_reported_but_group_is_kept(start_worker, ingest, control):
    hostname = "fleet-cancel@localhost"
    start_worker(["wg.acme.ingest"], hostname, extra_env=FAST)
    wait_until(lambda: registered(hostname, active_consumers=["wg.acme.ingest"]), timeout=20, what="registration")

    control.cancel_consumer("wg.acme.ingest", destination=[hostname], reply=True, timeout=5)

    worker = wait_until(lambda: registered(hostname, active_consumers=[]), timeout=10, what="the cancelled consumer")
    assert worker.queues == ["wg.acme.ingest"] and list(worker.groups.all()) == [ingest]


def test_graceful_stop_marks_worker_stopped(start_worker, ingest):
    hostname = "fleet-stop@localhost"
    proc = start_worker(["wg.acme.ingest"], hostname, extra_env=FAST)
    wait_until(lambda: registered(hostname), timeout=20, what="registration")

    proc.stop()

    assert proc.process.returncode is not None
    worker = wait_until(lambda: registered(hostname, status=WorkerStatus.STOPPED), timeout=5, what="stopped status")
    assert not worker.is_live and worker.loaded_artifacts == {}
    assert workers_mark_offline() == []


def test_heartbeat_failures_never_take_the_worker_down(start_worker, control):
    # given a worker whose database does not exist: every heartbeat fails
    hostname = "fleet-nodb@localhost"
    env = {**FAST, "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/fp_fleet_does_not_exist"}
    proc = start_worker(["wg.acme.ingest"], hostname, extra_env=env)

    # then it keeps running, answers remote control and keeps trying
    def failing_status():
        (reply,) = control.broadcast("flowplane_status", destination=[hostname], reply=True, timeout=5) or [{}]
        status = reply.get(hostname, {})
        return status if status.get("failures", 0) >= 2 else None

    status = wait_until(failing_status, timeout=15, interval=0.5, what="repeated failed heartbeats")
    assert status["beats"] == 0 and proc.process.poll() is None
    assert "fleet.heartbeat_failed" in proc.log_text()
