"""Triggers end to end: real `celery beat` (django-celery-beat's DatabaseScheduler, with interval
schedules on their grid: workers/beat.py) fires a deployed schedule every 2 s onto a real worker,
each tick at its own exact time on the grid, the runs succeed, pausing the deployment stops the ticks and
resuming brings them back; a finished run starts its chained workflow through the triggers sweep.

Beat and the worker are stopped by their process group id; every wait is bounded.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime

import pytest
from django.conf import settings

from controlplane.deployments.services import deployment_pause, deployment_resume
from controlplane.executions.models import Execution, ExecutionStatus, Trigger
from controlplane.fleet.models import Worker, WorkerStatus
from controlplane.fleet.services import worker_group_create
from controlplane.triggers.models import FireStatus, Schedule, ScheduleFire
from controlplane.workflows.models import Workflow
from tests.controlplane.executions.builders import deploy_version, make_live_worker
from tests.controlplane.triggers.conftest import publish
from tests.e2e.engine_support import wait_live
from tests.e2e.harness import REPO_ROOT, database_url, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ENV = {"WORKER_HEARTBEAT_INTERVAL_S": "0.5"}


def graph(**top):
    return {"nodes": [{"id": "a", "type": "noop", "group": "ingest"},
                      {"id": "b", "type": "log", "group": "ingest", "config": {"message": "tick"}}],
            "edges": [{"from": "a", "to": "b"}], **top}


@pytest.fixture
def start_beat(redis_test_db, tmp_path):
    """Start `celery beat` on the test database; stopped by its process group when the test ends."""
    started: list[subprocess.Popen] = []

    def start() -> subprocess.Popen:
        env = dict(os.environ, DATABASE_URL=database_url(), CELERY_BROKER_URL=settings.CELERY_BROKER_URL,
                   CELERY_RESULT_BACKEND=settings.CELERY_RESULT_BACKEND, PYTHONUNBUFFERED="1")
        log = open(tmp_path / "beat.log", "wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workers", "beat", "--loglevel", "INFO",
             "-S", settings.CELERY_BEAT_SCHEDULER, "--max-interval", "1",
             "-s", str(tmp_path / "beat-schedule"), "--pidfile", str(tmp_path / "beat.pid")],
            cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


@pytest.fixture
def ingest(company, start_worker, landing_dir):
    group = worker_group_create(company=company, slug="ingest")
    # the group's queue for steps, and the control plane's queue for beat's trigger tasks
    start_worker([group.queue_name, settings.CELERY_TASK_DEFAULT_QUEUE], "triggers1@e2e", concurrency=2,
                 extra_env={**ENV, "LANDING_STORE_URL": f"file://{landing_dir}"})
    wait_live(group)
    return group


def deploy(project, owner, slug, doc):
    workflow = Workflow.objects.filter(slug=slug).first() or Workflow.objects.create(
        project=project, slug=slug, name=slug, status="active", created_by=owner)
    return deploy_version(publish(workflow, doc, user=owner), user=owner)


def schedule_runs(deployment):
    return Execution.objects.filter(deployment=deployment, trigger=Trigger.SCHEDULE)


def test_beat_fires_a_schedule_and_stops_after_pause(project, owner, ingest, start_beat):
    deployment = deploy(project, owner, "ticker", graph(schedules=[
        {"name": "ping", "every_s": 2, "overlap": "allow_all", "input": {"from": "beat"}}]))
    start_beat()

    # beat fires the schedule; the runs it starts succeed on the worker and say which tick they are
    wait_until(lambda: schedule_runs(deployment).filter(status=ExecutionStatus.SUCCEEDED).count() >= 2,
               timeout=60, interval=0.5, what="two scheduled runs to succeed")
    run = schedule_runs(deployment).filter(status=ExecutionStatus.SUCCEEDED).first()
    assert run.input == {"from": "beat"} and run.trigger_details["schedule"] == "ping"
    assert run.trigger_details["scheduled_at"] and run.created_by is None
    # every tick is its own grid point (anchor + n * 2 s), never the time the task happened to run
    anchor = Schedule.objects.select_related("periodic_task").get(deployment=deployment).periodic_task.start_time
    ticks = list(ScheduleFire.objects.order_by("scheduled_at").values_list("scheduled_at", flat=True))
    assert all((tick - anchor).total_seconds() % 2 == 0 and tick >= anchor for tick in ticks), ticks
    assert {datetime.fromisoformat(r.trigger_details["scheduled_at"]) for r in schedule_runs(deployment)} <= set(ticks)

    # after pause beat stops firing (its entry is disabled), not merely the fires refused
    deployment_pause(deployment=deployment, user=owner)
    time.sleep(3)  # a tick already sent when pausing is refused; let beat see the change
    fires, runs = ScheduleFire.objects.count(), schedule_runs(deployment).count()
    time.sleep(4)  # two intervals: an entry still enabled fires on its 2 s grid within any such window
    assert ScheduleFire.objects.count() == fires and schedule_runs(deployment).count() == runs
    assert not ScheduleFire.objects.filter(status=FireStatus.STARTED, execution__isnull=True).exists()

    # resume: beat fires it again
    deployment_resume(deployment=deployment, user=owner)
    wait_until(lambda: schedule_runs(deployment).count() > runs, timeout=30, interval=0.5,
               what="a scheduled run after resume")


def test_a_finished_run_starts_its_chained_workflow(project, owner, ingest, start_beat, settings):
    from controlplane.executions.services import execution_start

    upstream = deploy(project, owner, "ingest-flow", graph())
    downstream = deploy(project, owner, "report-flow", graph(on={"workflow": "ingest-flow"}))
    _ensure_sweep_task()
    start_beat()
    run, _ = execution_start(deployment=upstream, input={"n": 1}, user=owner)
    chained = wait_until(lambda: Execution.objects.filter(deployment=downstream, status=ExecutionStatus.SUCCEEDED).first(),
                         timeout=60, interval=0.5, what="the chained run to succeed")
    assert chained.trigger == Trigger.WORKFLOW and chained.input["upstream"]["execution"] == str(run.pk)
    assert set(chained.input["upstream"]["output"]) == {"b"}  # the upstream graph's final job
    # more sweeps, here and on the worker beside them: still one chained run (no need to sleep through beat's)
    from controlplane.triggers.services import triggers_sweep

    assert [triggers_sweep()["chained"] for _ in range(3)] == [0, 0, 0]
    assert Execution.objects.filter(deployment=downstream).count() == 1


def test_a_chained_run_refused_for_want_of_a_worker_starts_when_one_comes_up(
    project, owner, company, start_worker, landing_dir, start_beat, settings
):
    """The downstream group has no worker when the upstream run ends: the sweep records the
    refusal and tries again with backoff; a worker started later runs the chained run."""
    from controlplane.executions.services import execution_start
    from controlplane.triggers.models import ChainRun

    ingest = worker_group_create(company=company, slug="ingest")
    report = worker_group_create(company=company, slug="report")
    retry_env = {**ENV, "LANDING_STORE_URL": f"file://{landing_dir}", "CHAIN_RETRY_INITIAL_S": "1",
                 "CHAIN_RETRY_MAX_DELAY_S": "2", "CHAIN_RETRY_MAX_TRIES": "100"}
    start_worker([ingest.queue_name, settings.CELERY_TASK_DEFAULT_QUEUE], "triggers1@e2e", concurrency=2,
                 extra_env=retry_env)
    wait_live(ingest)
    upstream = deploy(project, owner, "ingest-flow", graph())
    downstream_graph = graph(on={"workflow": "ingest-flow"})
    for node in downstream_graph["nodes"]:
        node["group"] = "report"
    # Planning wants a live worker in the group: a worker row that then goes offline, as the fleet
    # sweep marks one whose process died (no process behind it: rollout waits for no reply).
    settings.DEPLOY_CONTROL_TIMEOUT_S = 0.05
    gone = make_live_worker("report0@e2e", report)
    downstream = deploy(project, owner, "report-flow", downstream_graph)
    Worker.objects.filter(pk=gone.pk).update(status=WorkerStatus.OFFLINE)
    _ensure_sweep_task()
    start_beat()
    execution_start(deployment=upstream, input={"n": 1}, user=owner)

    refused = wait_until(lambda: ChainRun.objects.filter(deployment=downstream).exclude(tries=[]).first(),
                         timeout=60, interval=0.5, what="the chained start to be refused")
    assert refused.execution is None and refused.tries[0]["error"]["error"] == "no_live_worker"
    start_worker([report.queue_name], "report1@e2e", extra_env=retry_env)

    chained = wait_until(lambda: Execution.objects.filter(deployment=downstream, status=ExecutionStatus.SUCCEEDED).first(),
                         timeout=60, interval=0.5, what="the chained run to succeed once a worker is up")
    link = ChainRun.objects.get(deployment=downstream)
    assert (link.execution_id, link.next_try_at, link.error) == (chained.pk, None, None)
    assert len(link.tries) >= 1 and Execution.objects.filter(deployment=downstream).count() == 1


def _ensure_sweep_task():
    """The sweep's PeriodicTask, as its migration makes it (a transactional test's flush removed it)."""
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    every, _ = IntervalSchedule.objects.get_or_create(every=2, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.update_or_create(name="flowplane.triggers_sweep",
                                          defaults={"task": "flowplane.triggers_sweep", "interval": every,
                                                    "enabled": True})
