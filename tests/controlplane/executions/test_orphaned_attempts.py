"""Attempts whose process is gone while their worker lives on: a killed pool child, a replacement
process under the same node name, a redelivery that finds its claimer dead."""
from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta

import pytest
import redis
from django.conf import settings
from django.utils import timezone

from controlplane.executions.models import EventType, StepRun, StepStatus
from controlplane.executions.services import Delivery, execution_start, step_runs_recover_orphaned
from controlplane.executions.services.attempts import process_gone
from controlplane.fleet import hooks
from controlplane.fleet.models import Worker
from controlplane.fleet.services import worker_heartbeat
from tests.controlplane.executions.builders import job, make_deployment
from tests.signals import connected_uids, only_receiver

pytestmark = pytest.mark.django_db

HOST = "ingest9@unit"


@pytest.fixture
def execution(groups, project, owner):
    deployment = make_deployment(project, [job("a"), job("b"), job("c")], user=owner)
    return execution_start(deployment=deployment, input={}, user=owner)[0]


def heartbeat(**overrides):
    fields = dict(hostname=HOST, queues=["wg.acme.ingest"], concurrency=2, pid=100, software_version="test",
                  pool_pids=[201, 202])
    fields.update(overrides)
    return worker_heartbeat(**fields)


def running(execution, node_id, *, pid, started_at):
    return StepRun.objects.create(execution=execution, node_id=node_id, group="ingest", queue="wg.acme.ingest",
                                  status=StepStatus.RUNNING, worker=HOST, pid=pid, started_at=started_at,
                                  request={"task": "flowplane.step", "id": f"t-{node_id}"})


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait(timeout=10)
    return process.pid


class TestSweep:
    def test_an_attempt_whose_pool_child_is_no_longer_in_the_pool_is_lost_and_republished(
        self, execution, django_capture_on_commit_callbacks
    ):
        claimed = timezone.now() - timedelta(seconds=10)
        heartbeat(process_started_at=claimed - timedelta(minutes=1))
        killed = running(execution, "a", pid=299, started_at=claimed)
        alive = running(execution, "b", pid=201, started_at=claimed)

        with django_capture_on_commit_callbacks() as callbacks:
            assert step_runs_recover_orphaned() == 1

        killed.refresh_from_db(), alive.refresh_from_db()
        assert (killed.status, alive.status) == (StepStatus.LOST, StepStatus.RUNNING)
        assert "pid 299" in execution.events.filter(type=EventType.STEP_LOST).get().data["reason"]
        assert len(callbacks) == 1

    def test_the_lost_attempt_s_task_is_republished_due_after_the_node_s_retry_delay(
        self, groups, project, owner, django_capture_on_commit_callbacks
    ):
        deployment = make_deployment(project, [job("a", retry={"max_attempts": 3, "initial_delay_s": 3,
                                                                "jitter": False})], user=owner)
        execution = execution_start(deployment=deployment, input={}, user=owner)[0]
        claimed = timezone.now() - timedelta(seconds=10)
        heartbeat(process_started_at=claimed - timedelta(minutes=1))
        killed = running(execution, "a", pid=299, started_at=claimed)
        killed.request = {**killed.request, "args": [str(execution.pk), "a", 0, 1], "kwargs": {}}
        killed.save(update_fields=["request"])
        broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)

        with django_capture_on_commit_callbacks(execute=True):
            assert step_runs_recover_orphaned() == 1

        lost = execution.events.filter(type=EventType.STEP_LOST).get()
        assert lost.data["retry_in_s"] == 3.0
        messages = [json.loads(raw) for raw in broker.lrange("wg.acme.ingest", 0, -1)]
        republished = [m["headers"] for m in messages if m["headers"].get("id") == "t-a"]
        assert len(republished) == 1 and republished[0]["eta"]
        assert datetime.fromisoformat(republished[0]["eta"]) >= lost.created_at + timedelta(seconds=3)

    def test_an_attempt_claimed_after_the_last_heartbeat_is_left_alone(self, execution):
        # The heartbeat could not have listed a child forked after it.
        heartbeat(process_started_at=timezone.now() - timedelta(minutes=1))
        fresh = running(execution, "a", pid=299, started_at=timezone.now())

        assert step_runs_recover_orphaned() == 0
        fresh.refresh_from_db()
        assert fresh.status == StepStatus.RUNNING

    def test_a_pool_that_cannot_tell_its_processes_concludes_nothing(self, execution):
        claimed = timezone.now() - timedelta(seconds=10)
        heartbeat(pool_pids=None, process_started_at=claimed - timedelta(minutes=1))
        run = running(execution, "a", pid=299, started_at=claimed)

        assert step_runs_recover_orphaned() == 0
        run.refresh_from_db()
        assert run.status == StepStatus.RUNNING

    def test_an_attempt_claimed_before_the_worker_s_current_process_started_is_lost(self, execution):
        now = timezone.now()
        old = running(execution, "a", pid=201, started_at=now - timedelta(minutes=5))
        heartbeat(pid=100, process_started_at=now - timedelta(minutes=1))

        assert step_runs_recover_orphaned() == 1
        old.refresh_from_db()
        assert old.status == StepStatus.LOST

    def test_offline_workers_are_left_to_the_offline_sweep(self, execution):
        claimed = timezone.now() - timedelta(seconds=10)
        worker = heartbeat(process_started_at=claimed - timedelta(minutes=1))
        Worker.objects.filter(pk=worker.pk).update(status="offline")
        running(execution, "a", pid=299, started_at=claimed)

        assert step_runs_recover_orphaned() == 0


class TestReplacement:
    @pytest.fixture
    def replaced(self):
        calls = []

        def record(sender, hostname, started_at, **kwargs):
            calls.append((hostname, started_at))

        with only_receiver(hooks.worker_replaced, record):
            yield calls

    def test_a_new_process_under_the_same_name_and_pid_is_a_new_incarnation(
        self, replaced, django_capture_on_commit_callbacks
    ):
        first = timezone.now() - timedelta(minutes=10)
        heartbeat(process_started_at=first)
        heartbeat(process_started_at=first)  # the same process again: nothing happens
        with django_capture_on_commit_callbacks(execute=True):
            heartbeat(process_started_at=first)
        assert replaced == []

        second = timezone.now()
        with django_capture_on_commit_callbacks(execute=True):
            worker = heartbeat(process_started_at=second)  # a restarted container keeps pid and name

        assert replaced == [(HOST, second)]
        assert worker.started_at == second

    def test_a_new_pid_is_a_new_incarnation(self, replaced, django_capture_on_commit_callbacks):
        heartbeat(pid=100)
        with django_capture_on_commit_callbacks(execute=True):
            heartbeat(pid=101)
        assert [hostname for hostname, _ in replaced] == [HOST]

    def test_a_worker_that_said_it_stopped_is_not_taken_for_replaced(
        self, replaced, django_capture_on_commit_callbacks
    ):
        from controlplane.fleet.services import worker_stopped

        heartbeat(pid=100)
        worker_stopped(hostname=HOST)
        with django_capture_on_commit_callbacks(execute=True):
            heartbeat(pid=101)
        assert replaced == []

    def test_the_replacement_recovers_only_what_the_earlier_process_claimed(
        self, execution, django_capture_on_commit_callbacks
    ):
        from controlplane.executions.services import worker_replaced_recover

        assert "executions.worker_replaced_recover" in connected_uids(hooks.worker_replaced)
        started = timezone.now()
        earlier = running(execution, "a", pid=201, started_at=started - timedelta(seconds=30))
        mine = running(execution, "b", pid=301, started_at=started + timedelta(seconds=1))

        with django_capture_on_commit_callbacks() as callbacks:
            republished, _ = worker_replaced_recover(HOST, started)

        earlier.refresh_from_db(), mine.refresh_from_db()
        assert (republished, earlier.status, mine.status) == (1, StepStatus.LOST, StepStatus.RUNNING)
        assert len(callbacks) >= 1


class TestRedeliveryOfAKilledChild:
    def test_a_claim_by_a_dead_process_of_the_same_worker_is_gone(self, execution):
        run = running(execution, "a", pid=dead_pid(), started_at=timezone.now())
        assert process_gone(run, Delivery(worker=HOST, pid=1))

    def test_a_claim_by_a_live_process_is_not(self, execution):
        import os

        run = running(execution, "a", pid=os.getppid(), started_at=timezone.now())
        assert not process_gone(run, Delivery(worker=HOST, pid=os.getpid()))

    def test_another_worker_cannot_judge_a_pid_of_another_host(self, execution):
        run = running(execution, "a", pid=dead_pid(), started_at=timezone.now())
        assert not process_gone(run, Delivery(worker="ingest2@elsewhere", pid=1))


class TestRepeatedlyLost:
    """Lost attempts count against the node's max_attempts (here 3), like failures."""

    @pytest.fixture
    def execution(self, groups, project, owner):
        deployment = make_deployment(project, [job("a", retry={"max_attempts": 3, "jitter": False})], user=owner)
        return execution_start(deployment=deployment, input={}, user=owner)[0]

    def lost(self, execution, count):
        for attempt in range(1, count + 1):
            StepRun.objects.create(execution=execution, node_id="a", group="ingest", queue="wg.acme.ingest",
                                   attempt=attempt, status=StepStatus.LOST, worker=HOST, started_at=timezone.now())

    def test_a_shard_lost_fewer_times_than_the_limit_runs_again(self, execution, settings):
        from tests.controlplane.executions.test_services import step

        self.lost(execution, 2)
        assert step(execution, "a").action == "done"
        assert StepRun.objects.get(execution=execution, node_id="a", attempt=3).status == StepStatus.SUCCEEDED

    def test_a_shard_lost_as_often_as_the_limit_fails_for_good(self, execution, settings):
        from controlplane.executions.models import DeadLetter, ExecutionStatus
        from tests.controlplane.executions.test_services import step

        self.lost(execution, 3)

        outcome = step(execution, "a")

        assert outcome.action == "fail"
        failed = StepRun.objects.get(execution=execution, node_id="a", attempt=4)
        assert failed.status == StepStatus.FAILED and failed.error["details"] == {"reason": "lost_repeatedly", "lost": 3}
        assert DeadLetter.objects.filter(execution=execution, node_id="a").exists()
        execution.refresh_from_db()
        assert execution.status == ExecutionStatus.COMPENSATING


class TestLostAttemptsCountAgainstMaxAttempts:
    def test_a_node_with_one_attempt_whose_attempt_was_lost_fails_for_good(self, execution):
        from controlplane.executions.models import ExecutionStatus
        from tests.controlplane.executions.test_services import step

        StepRun.objects.create(execution=execution, node_id="a", group="ingest", queue="wg.acme.ingest",
                               attempt=1, status=StepStatus.LOST, worker=HOST, started_at=timezone.now())

        assert step(execution, "a").action == "fail"
        failed = StepRun.objects.get(execution=execution, node_id="a", attempt=2)
        assert failed.error["details"] == {"reason": "lost_repeatedly", "lost": 1}
        execution.refresh_from_db()
        assert execution.status == ExecutionStatus.COMPENSATING

    def test_a_failure_then_a_loss_use_up_two_attempts(self, groups, project, owner):
        from tests.controlplane.executions.test_services import step

        deployment = make_deployment(project, [job("a", retry={"max_attempts": 2})], user=owner)
        execution = execution_start(deployment=deployment, input={}, user=owner)[0]
        for attempt, status in ((1, StepStatus.FAILED), (2, StepStatus.LOST)):
            StepRun.objects.create(execution=execution, node_id="a", group="ingest", queue="wg.acme.ingest",
                                   attempt=attempt, status=status, worker=HOST, started_at=timezone.now())

        assert step(execution, "a").action == "fail"
        details = StepRun.objects.get(execution=execution, node_id="a", attempt=3).error["details"]
        assert details["reason"] == "attempts_exhausted" and (details["failed"], details["lost"]) == (1, 1)

    def test_an_attempt_lost_to_the_engines_database_does_not_count(self, execution):
        from tests.controlplane.executions.test_services import step

        StepRun.objects.create(execution=execution, node_id="a", group="ingest", queue="wg.acme.ingest",
                               attempt=1, status=StepStatus.LOST, worker=HOST, started_at=timezone.now(),
                               error={"message": "retried", "retryable": True,
                                      "details": {"worker": HOST, "counts": False}})

        assert step(execution, "a").action == "done"
        assert StepRun.objects.get(execution=execution, node_id="a", attempt=2).status == StepStatus.SUCCEEDED

    def test_a_redelivery_that_finds_its_claimer_dead_marks_it_lost_and_gives_up_without_attempts_left(
        self, execution
    ):
        from controlplane.executions.models import EventType
        from tests.controlplane.executions.test_services import step

        running(execution, "a", pid=dead_pid(), started_at=timezone.now())

        outcome = step(execution, "a", delivery=Delivery(worker=HOST, pid=1, task_id="t-other"))

        assert outcome.action == "fail"
        assert list(StepRun.objects.filter(execution=execution, node_id="a").order_by("attempt")
                    .values_list("attempt", "status")) == [(1, StepStatus.LOST), (2, StepStatus.FAILED)]
        assert execution.events.filter(type=EventType.STEP_LOST).count() == 1
