"""Engine services without workers: claim rules, skip rule, retries, failure, recovery, events."""
from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction

from controlplane.core.errors import ApplicationError, Conflict, NotFound
from controlplane.executions.models import (
    AppendOnly,
    DeadLetter,
    EventType,
    Execution,
    ExecutionEvent,
    ExecutionStatus,
    StepRun,
    StepStatus,
)
from controlplane.executions.services import (
    Delivery,
    event_append,
    execution_start,
    locked_execution,
    step_execute,
    step_runs_recover_lost,
)
from controlplane.fleet.models import Worker
from tests.controlplane.executions.builders import edges, job, make_deployment, make_group
from tests.factories import make_company, make_project, make_user

pytestmark = pytest.mark.django_db

DELIVERY = Delivery(task_id="t-1", worker="ingest1@unit", queue="wg.acme.ingest",
                    request={"id": "t-1", "task": "flowplane.step"})


def start(project, owner, nodes, edge_list=(), **kwargs):
    """Given the graph deployed, start a run of it."""
    deployment = make_deployment(project, nodes, edge_list, user=owner)
    execution, created = execution_start(deployment=deployment, input=kwargs.pop("input", {}), user=owner, **kwargs)
    return execution


def step(execution, node_id, shard=0, shards=1, delivery=DELIVERY):
    return step_execute(execution_id=execution.pk, node_id=node_id, shard=shard, shard_count=shards, delivery=delivery)


def statuses(execution):
    return dict(StepRun.objects.filter(execution=execution, is_compensation=False).values_list("node_id", "status"))


class TestClaim:
    def test_a_step_runs_and_records_its_output_and_events(self, groups, project, owner):
        execution = start(project, owner, [job("a", "python", config={"callable": "echo", "kwargs": {"n": "{{ .trigger.n }}"}})],
                          input={"n": 3})

        outcome = step(execution, "a")

        assert (outcome.action, outcome.status) == ("done", "succeeded")
        run = StepRun.objects.get(execution=execution)
        assert (run.output, run.input, run.worker, run.attempt) == ({"n": 3}, {"callable": "echo", "kwargs": {"n": 3}},
                                                                     "ingest1@unit", 1)
        assert run.request["id"] == "t-1"
        types = list(execution.events.values_list("type", flat=True))
        assert types == [EventType.EXECUTION_STARTED, EventType.STEP_STARTED, EventType.STEP_COMPLETED]
        assert run.completed_seq == 3

    def test_a_redelivered_step_that_already_succeeded_does_not_run_again(self, groups, project, owner):
        execution = start(project, owner, [job("a")])
        step(execution, "a")

        again = step(execution, "a")

        assert (again.action, again.status) == ("done", "succeeded")
        assert StepRun.objects.filter(execution=execution).count() == 1

    def test_a_duplicate_delivery_while_an_attempt_runs_is_ignored(self, groups, project, owner):
        execution = start(project, owner, [job("a")])
        StepRun.objects.create(execution=execution, node_id="a", group="ingest", queue="q", status=StepStatus.RUNNING,
                               worker="other@unit")

        outcome = step(execution, "a")

        assert outcome.action == "ignore"
        assert StepRun.objects.filter(execution=execution).count() == 1

    @pytest.mark.parametrize("task_id, retries, runs_again", [
        ("t-1", 1, True),    # a retry of the task that claimed it: that try is over
        ("t-1", 0, False),   # the same try delivered again (Redis redelivery): still running somewhere
        ("t-2", 1, False),   # another task's delivery
    ])
    def test_a_retry_of_the_task_that_claimed_a_running_attempt_runs_it_again(
        self, groups, project, owner, task_id, retries, runs_again
    ):
        execution = start(project, owner, [job("a")])
        StepRun.objects.create(execution=execution, node_id="a", group="ingest", queue="q", status=StepStatus.RUNNING,
                               worker="ingest1@unit", task_id="t-1", request={"id": "t-1", "retries": 0})
        delivery = Delivery(task_id=task_id, worker="ingest1@unit", queue="q", retries=retries)

        outcome = step(execution, "a", delivery=delivery)

        attempts = list(StepRun.objects.filter(execution=execution).order_by("attempt").values_list("attempt", "status"))
        if runs_again:
            assert (outcome.action, attempts) == ("done", [(1, "lost"), (2, "succeeded")])
            assert execution.events.filter(type=EventType.STEP_LOST).count() == 1
        else:
            assert (outcome.action, attempts) == ("ignore", [(1, "running")])

    def test_a_step_waits_for_its_predecessors(self, groups, project, owner):
        execution = start(project, owner, [job("a"), job("b")], edges(("a", "b")))

        outcome = step(execution, "b")

        assert outcome.action == "wait" and outcome.countdown > 0
        assert not StepRun.objects.filter(execution=execution).exists()

    @pytest.mark.parametrize("status", [ExecutionStatus.CANCELLED, ExecutionStatus.COMPENSATING])
    def test_a_step_of_a_run_that_is_not_running_does_nothing(self, groups, project, owner, status):
        execution = start(project, owner, [job("a")])
        Execution.objects.filter(pk=execution.pk).update(status=status)

        assert step(execution, "a").action == "ignore"
        assert not StepRun.objects.filter(execution=execution).exists()


class TestSkipRule:
    NODES = [
        job("check", "condition", config={"expression": ".trigger.go"}),
        job("yes"), job("no"), job("after_no"), job("join"),
    ]
    EDGES = edges(("check", "yes", "true"), ("check", "no", "false"), ("no", "after_no"),
                  ("yes", "join"), ("after_no", "join"))

    @pytest.mark.parametrize("go, taken, skipped", [(True, "yes", {"no", "after_no"}), (False, "no", {"yes"})],
                             ids=["true-branch", "false-branch"])
    def test_untaken_branches_are_skipped_and_a_join_with_one_live_edge_runs(self, groups, project, owner, go,
                                                                             taken, skipped):
        execution = start(project, owner, self.NODES, self.EDGES, input={"go": go})

        for node in ["check", "yes", "no", "after_no", "join"]:
            step(execution, node)

        result = statuses(execution)
        assert {n for n, s in result.items() if s == "skipped"} == skipped
        assert result[taken] == "succeeded" and result["join"] == "succeeded"
        assert execution.events.filter(type=EventType.STEP_SKIPPED).count() == len(skipped)


class TestFailure:
    def test_a_retryable_failure_with_attempts_left_asks_for_a_retry(self, groups, project, owner):
        execution = start(project, owner, [job("f", "fail", retry={"max_attempts": 2, "initial_delay_s": 1,
                                                                     "jitter": False})])

        outcome = step(execution, "f")

        assert (outcome.action, outcome.countdown) == ("retry", 1.0)
        assert execution.events.filter(type=EventType.STEP_RETRYING).count() == 1
        execution.refresh_from_db()
        assert execution.status == ExecutionStatus.RUNNING

    def test_the_last_attempt_dead_letters_and_starts_the_saga_once(self, groups, project, owner,
                                                                      django_capture_on_commit_callbacks):
        execution = start(project, owner, [job("a", "fail", config={"retryable": False}),
                                           job("b", "fail", config={"retryable": False})])

        from controlplane.executions.services.steps import _claim_locked, _record_step

        with django_capture_on_commit_callbacks() as callbacks:
            with transaction.atomic():  # b is claimed and in flight ...
                _, run_b, job_b, context_b = _claim_locked(execution.pk, "b", 0, 1, DELIVERY, deferred=False)
            first = step(execution, "a")  # ... when a fails for good
            second = _record_step(execution.pk, run_b.pk, job_b, {}, None,
                                  {"message": "boom", "retryable": False, "details": {}}, context_b, DELIVERY)

        assert (first.action, second.action) == ("fail", "fail")
        execution.refresh_from_db()
        assert execution.status == ExecutionStatus.COMPENSATING and execution.error["node_id"] == "a"
        assert DeadLetter.objects.filter(execution=execution).count() == 2
        assert execution.events.filter(type=EventType.EXECUTION_FAILED).count() == 1
        assert len(callbacks) == 1  # one saga published, however many branches failed

    def test_a_template_error_is_not_retried(self, groups, project, owner):
        execution = start(project, owner, [job("a", "log", config={"message": "{{ .nope | error }}"},
                                              retry={"max_attempts": 5})])

        outcome = step(execution, "a")

        assert outcome.action == "fail"
        assert StepRun.objects.get(execution=execution).error["retryable"] is False


class TestRecovery:
    def test_running_attempts_of_offline_workers_are_marked_lost_and_republished(
        self, groups, project, owner, django_capture_on_commit_callbacks
    ):
        execution = start(project, owner, [job("a"), job("b")])
        lost = StepRun.objects.create(execution=execution, node_id="a", group="ingest", queue="wg.acme.ingest",
                                      status=StepStatus.RUNNING, worker="dead@unit", request={"task": "flowplane.step"})
        alive = StepRun.objects.create(execution=execution, node_id="b", group="ingest", queue="wg.acme.ingest",
                                       status=StepStatus.RUNNING, worker="ingest1@unit")

        with django_capture_on_commit_callbacks() as callbacks:
            assert step_runs_recover_lost(["dead@unit"]) == 1

        lost.refresh_from_db(), alive.refresh_from_db()
        assert (lost.status, alive.status) == (StepStatus.LOST, StepStatus.RUNNING)
        assert execution.events.filter(type=EventType.STEP_LOST).get().data["node_id"] == "a"
        assert len(callbacks) == 1

    def test_the_recovery_hook_is_registered_with_the_fleet(self):
        from controlplane.fleet import hooks

        from tests.signals import connected_uids

        assert "executions.lost_work_recover" in connected_uids(hooks.workers_offline)

    def test_an_attempt_past_its_hard_time_limit_is_lost_and_fails_the_run(
        self, groups, project, owner, django_capture_on_commit_callbacks
    ):
        from datetime import timedelta

        from django.utils import timezone

        from controlplane.executions.services import step_runs_expire

        execution = start(project, owner, [job("a", timeout_s=1), job("b")])
        StepRun.objects.create(execution=execution, node_id="a", group="ingest", queue="wg.acme.ingest",
                               status=StepStatus.RUNNING, worker="ingest1@unit",
                               started_at=timezone.now() - timedelta(minutes=5))
        StepRun.objects.create(execution=execution, node_id="b", group="ingest", queue="wg.acme.ingest",
                               status=StepStatus.RUNNING, worker="ingest1@unit",
                               started_at=timezone.now() - timedelta(minutes=5))  # no timeout_s: never expires

        with django_capture_on_commit_callbacks() as callbacks:
            assert step_runs_expire() == 1

        execution.refresh_from_db()
        assert statuses(execution) == {"a": "lost", "b": "running"}
        assert execution.status == ExecutionStatus.COMPENSATING and len(callbacks) == 1

    def test_after_a_lost_attempt_the_redelivery_claims_the_next_attempt(self, groups, project, owner):
        # A lost attempt counts against max_attempts: the node has a second one to give.
        execution = start(project, owner, [job("a", retry={"max_attempts": 2})])
        StepRun.objects.create(execution=execution, node_id="a", group="ingest", queue="q", status=StepStatus.LOST)

        step(execution, "a")

        assert list(StepRun.objects.filter(execution=execution).order_by("attempt").values_list("attempt", "status")) \
            == [(1, "lost"), (2, "succeeded")]


class TestStart:
    def test_start_pins_the_deployments_version_and_artifacts_and_dispatches_after_commit(
        self, groups, project, owner, django_capture_on_commit_callbacks
    ):
        deployment = make_deployment(project, [job("a", timeout_s=5), job("b", group="load", replicas=2)],
                                     edges(("a", "b")), user=owner)
        with django_capture_on_commit_callbacks() as callbacks:
            execution, created = execution_start(deployment=deployment, input={}, user=owner)

        assert created and execution.status == ExecutionStatus.RUNNING
        assert (execution.deployment, execution.environment, execution.version) == (
            deployment, "prod", deployment.version)
        assert [(j["id"], j["group"], j["replicas"]) for j in execution.graph["jobs"]] == [
            ("a", "ingest", 1), ("b", "load", 2)]
        assert execution.graph["edges"] == [{"from": "a", "to": "b", "branch": None}]
        assert (execution.graph["deployment"], execution.graph["version"]) == (deployment.pk, 1)
        assert execution.canvas["root"]["kind"] == "chain" and execution.canvas["timeouts"] == {"a": 5}
        started = execution.events.get(type=EventType.EXECUTION_STARTED).data
        assert (started["deployment"], started["environment"], started["version_number"]) == (deployment.pk, "prod", 1)
        assert len(callbacks) == 1

    def test_a_run_stays_pinned_to_the_version_it_started_on(self, groups, project, owner):
        first_deployment = make_deployment(
            project, [job("a", "log", config={"message": "v1"})], user=owner)
        before, _ = execution_start(deployment=first_deployment, input={}, user=owner)

        deployment = make_deployment(project, [job("a", "log", config={"message": "v2"}), job("b", group="load")],
                                     edges(("a", "b")), user=owner, workflow=first_deployment.workflow)
        after, _ = execution_start(deployment=deployment, input={}, user=owner)

        assert deployment.pk == first_deployment.pk and deployment.version.number == 2  # same row, new version
        before.refresh_from_db()
        assert before.version.number == 1 and [j["id"] for j in before.graph["jobs"]] == ["a"]
        assert before.job("a")["config"] == {"message": "v1"}
        assert after.version.number == 2 and after.job("a")["config"] == {"message": "v2"}
        assert [j["id"] for j in after.graph["jobs"]] == ["a", "b"]

    def test_a_landing_edge_runs_through_its_adapter_jobs(self, groups, project, owner):
        deployment = make_deployment(
            project,
            [job("produce", "python", config={"callable": "echo", "kwargs": {"rows": 3}}),
             job("consume", "jq", group="load", config={"program": ".steps[\"produce->consume/landing-read\"].output"})],
            [{"from": "produce", "to": "consume", "delivery": "landing"}],
            user=owner,
        )

        execution, _ = execution_start(deployment=deployment, input={}, user=owner)

        write, read = "produce->consume/landing-write", "produce->consume/landing-read"
        assert [(j["id"], j["type"], j["group"]) for j in execution.graph["jobs"]] == [
            ("produce", "python", "ingest"), (write, "landing_write", "ingest"), (read, "landing_read", "load"),
            ("consume", "jq", "load")]
        assert [(e["from"], e["to"]) for e in execution.graph["edges"]] == [
            ("produce", write), (write, read), (read, "consume")]
        assert execution.job(write)["config"]["key"] == "{{ .execution.id }}/produce->consume"

    def test_the_same_key_returns_the_same_execution_and_a_different_input_or_deployment_conflicts(
        self, groups, project, owner
    ):
        deployment = make_deployment(project, [job("a")], user=owner)
        other = make_deployment(project, [job("a")], user=owner)
        first, _ = execution_start(deployment=deployment, input={"x": 1}, user=owner, idempotency_key="k")
        again, created = execution_start(deployment=deployment.pk, input={"x": 1}, user=owner, idempotency_key="k")
        assert again.pk == first.pk and not created
        for target, input in [(deployment, {"x": 2}), (other, {"x": 1})]:
            with pytest.raises(Conflict) as exc:
                execution_start(deployment=target, input=input, user=owner, idempotency_key="k")
            assert (exc.value.code, exc.value.path) == ("idempotency_conflict", "idempotency_key")

    @pytest.mark.parametrize(
        "nodes, input, stale, error, code, path",
        [
            ([job("a")], [1, 2], None, ApplicationError, "invalid", "input"),
            ([job("a", group="load")], {}, "load1@unit", Conflict, "no_live_worker", "jobs.a.group"),
            ([job("a", compensate={"type": "noop", "group": "load"})], {}, "load1@unit", Conflict, "no_live_worker",
             "jobs.a.compensate.group"),
        ],
        ids=["input-not-object", "no-live-worker", "no-live-worker-for-compensation"],
    )
    def test_bad_input_is_refused_and_nothing_is_dispatched(self, groups, project, owner, nodes, input, stale,
                                                           error, code, path, django_capture_on_commit_callbacks):
        deployment = make_deployment(project, nodes, user=owner)
        if stale:  # the worker went quiet after the deploy
            Worker.objects.filter(hostname=stale).update(last_heartbeat="2000-01-01T00:00:00Z")
        with django_capture_on_commit_callbacks() as callbacks, pytest.raises(error) as exc:
            execution_start(deployment=deployment, input=input, user=owner)
        assert (exc.value.code, exc.value.path) == (code, path)
        assert not callbacks and not Execution.objects.exists()

    @pytest.mark.parametrize("action, code", [("pause", "deployment_paused"), ("undeploy", "deployment_undeployed")])
    def test_a_deployment_that_does_not_accept_executions_refuses_with_409(
        self, groups, project, owner, action, code, django_capture_on_commit_callbacks
    ):
        from controlplane.deployments import services as deploy

        deployment = make_deployment(project, [job("a")], user=owner)
        getattr(deploy, f"deployment_{action}")(deployment=deployment, user=owner)

        with django_capture_on_commit_callbacks() as callbacks, pytest.raises(Conflict) as exc:
            execution_start(deployment=deployment, input={}, user=owner)

        assert (exc.value.code, exc.value.path) == (code, "deployment")
        assert not callbacks and not Execution.objects.exists()
        if action == "pause":
            deploy.deployment_resume(deployment=deployment, user=owner)
            execution, created = execution_start(deployment=deployment, input={}, user=owner)
            assert created and execution.status == ExecutionStatus.RUNNING

    def test_a_repeat_of_a_known_key_is_answered_even_once_paused(self, groups, project, owner):
        from controlplane.deployments.services import deployment_pause

        deployment = make_deployment(project, [job("a")], user=owner)
        first, _ = execution_start(deployment=deployment, input={}, user=owner, idempotency_key="k")
        deployment_pause(deployment=deployment, user=owner)

        again, created = execution_start(deployment=deployment, input={}, user=owner, idempotency_key="k")

        assert again.pk == first.pk and not created

    def test_another_tenants_deployment_is_not_found(self, groups, project, owner, outsider):
        deployment = make_deployment(project, [job("a")], user=owner)
        with pytest.raises(NotFound) as exc:
            execution_start(deployment=deployment, input={}, user=outsider)
        assert exc.value.path == "deployment"
        with pytest.raises(NotFound):
            execution_start(deployment=999999, input={}, user=owner)

    def test_a_stale_worker_is_not_live(self, groups, project, owner):
        deployment = make_deployment(project, [job("a", group="load")], user=owner)
        Worker.objects.filter(hostname="load1@unit").update(last_heartbeat="2000-01-01T00:00:00Z")
        with pytest.raises(Conflict) as exc:
            execution_start(deployment=deployment, input={}, user=owner)
        assert exc.value.code == "no_live_worker"


class TestEvents:
    def test_events_are_append_only(self, groups, project, owner):
        execution = start(project, owner, [job("a")])
        event = execution.events.get()
        with pytest.raises(AppendOnly):
            event.save()
        with pytest.raises(AppendOnly):
            event.delete()


@pytest.mark.django_db(transaction=True)
def test_concurrent_appends_get_dense_unique_sequence_numbers(company, owner):
    from tests.controlplane.executions.builders import make_live_worker

    if connection.vendor != "postgresql":
        pytest.skip("concurrent writers on the execution row lock: PostgreSQL (SQLite's in-memory test "
                    "database locks whole tables)")

    project = make_project(company, "conc")
    make_live_worker("ingest1@unit", make_group(company, "ingest"))
    execution = start(project, owner, [job("a")])
    errors = []

    def append(n):
        try:
            for _ in range(n):
                with transaction.atomic():
                    event_append(execution=locked_execution(execution.pk), type=EventType.STEP_STARTED, data={})
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=append, args=(10,)) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)

    assert not errors
    seqs = list(ExecutionEvent.objects.filter(execution=execution).order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, 52))
    execution.refresh_from_db()
    assert execution.event_seq == 51


@pytest.mark.django_db(transaction=True)
def test_a_start_waits_for_an_apply_holding_the_deployment_row(company, owner):
    """apply/rollback/pause update the deployment row first; a start share-locks it, so it never
    pins a half-applied deployment (PostgreSQL row locks)."""
    import time

    from controlplane.deployments.models import Deployment
    from django.db.models import F
    from tests.controlplane.executions.builders import make_live_worker

    if connection.vendor != "postgresql":
        pytest.skip("row locks: PostgreSQL")
    project = make_project(company, "locks")
    make_live_worker("ingest1@unit", make_group(company, "ingest"))
    deployment = make_deployment(project, [job("a")], user=owner)
    holding, released = threading.Event(), {}

    def apply_in_progress():
        try:
            with transaction.atomic():
                Deployment.objects.filter(pk=deployment.pk).update(revision=F("revision") + 1)
                holding.set()
                time.sleep(0.5)
                released["at"] = time.monotonic()
        finally:
            connection.close()

    applier = threading.Thread(target=apply_in_progress)
    applier.start()
    assert holding.wait(10)
    execution, _ = execution_start(deployment=deployment, input={}, user=owner)
    started_at = time.monotonic()
    applier.join(10)

    assert started_at >= released["at"]  # the start went on only once the apply had committed
    assert execution.status == ExecutionStatus.RUNNING
