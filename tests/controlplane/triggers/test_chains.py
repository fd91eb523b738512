"""Chained workflows: a finished upstream run starts its downstream runs exactly once, with the
upstream output as input; loops of chained workflows are refused at plan time with their path."""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from controlplane.deployments.models import JobDeployment
from controlplane.deployments.services import plan_create
from controlplane.executions.models import Execution, ExecutionStatus, StepRun, StepStatus, Trigger
from controlplane.executions.services import execution_start
from controlplane.fleet.models import Worker
from controlplane.triggers.models import ChainRun, ChainTrigger
from controlplane.triggers.services import chains_fire, triggers_sweep
from controlplane.workflows.models import Workflow
from tests.controlplane.triggers.conftest import doc, publish

pytestmark = pytest.mark.django_db


def finished_run(deployment, owner, status=ExecutionStatus.SUCCEEDED, output=None):
    """A run of `deployment` that ended with `status`, its final step `b` having output `output`."""
    run, _ = execution_start(deployment=deployment, input={"n": 1}, user=owner)
    StepRun.objects.create(execution=run, node_id="b", group="ingest", queue="q", status=StepStatus.SUCCEEDED,
                           output=output if output is not None else {"rows": 3})
    Execution.objects.filter(pk=run.pk).update(status=status, finished_at=timezone.now())
    return run


def test_a_finished_upstream_run_starts_the_downstream_run_once(deploy, owner):
    upstream = deploy(doc(), workflow="ingest")
    downstream = deploy(doc(on={"workflow": "ingest", "status": "succeeded"}), workflow="report")
    assert ChainTrigger.objects.filter(deployment=downstream).count() == 1
    run = finished_run(upstream, owner)
    assert chains_fire() == 1
    chained = Execution.objects.get(deployment=downstream)
    assert chained.trigger == Trigger.WORKFLOW
    assert chained.input == {"upstream": {"execution": str(run.pk), "workflow": "ingest", "status": "succeeded",
                                          "output": {"b": {"rows": 3}}}}
    assert chained.trigger_details["upstream_execution"] == str(run.pk)
    # the next sweeps find the pair done: one run, one ChainRun
    assert chains_fire() == 0 and triggers_sweep() == {"buffered_started": 0, "chained": 0}
    assert Execution.objects.filter(deployment=downstream).count() == 1 and ChainRun.objects.count() == 1


@pytest.mark.parametrize("wanted, status, fires", [
    pytest.param("succeeded", ExecutionStatus.FAILED, False, id="succeeded-ignores-failed"),
    pytest.param("failed", ExecutionStatus.COMPENSATED, True, id="failed-includes-compensated"),
    pytest.param("any", ExecutionStatus.SUCCEEDED, True, id="any"),
    pytest.param("any", ExecutionStatus.CANCELLED, False, id="cancelled-never"),
])
def test_status_filter(deploy, owner, wanted, status, fires):
    upstream = deploy(doc(), workflow="ingest")
    deploy(doc(on={"workflow": "ingest", "status": wanted}), workflow="report")
    finished_run(upstream, owner, status=status)
    assert chains_fire() == int(fires)


def test_runs_that_finished_before_the_chain_existed_start_nothing(deploy, owner):
    upstream = deploy(doc(), workflow="ingest")
    finished_run(upstream, owner)
    deploy(doc(on={"workflow": "ingest"}), workflow="report")
    assert chains_fire() == 0


def test_a_paused_downstream_starts_nothing(deploy, owner):
    from controlplane.deployments.services import deployment_pause

    upstream = deploy(doc(), workflow="ingest")
    downstream = deploy(doc(on={"workflow": "ingest"}), workflow="report")
    deployment_pause(deployment=downstream, user=owner)
    finished_run(upstream, owner)
    assert chains_fire() == 0


def plan_for(workflow_slug, graph, owner):
    workflow = Workflow.objects.get(slug=workflow_slug)
    return plan_create(workflow=workflow, version=publish(workflow, graph, user=owner), environment="prod", user=owner)


def test_a_loop_of_two_workflows_is_refused_at_plan_time(deploy, owner):
    deploy(doc(on={"workflow": "b-flow"}), workflow="a-flow")
    deploy(doc(), workflow="b-flow")
    plan = plan_for("b-flow", doc(on={"workflow": "a-flow"}), owner)
    assert plan.has_errors
    (error,) = [e for e in plan.plan["errors"] if e["code"] == "cycle"]
    assert error["path"] == "on" and "b-flow -> a-flow -> b-flow" in error["message"]
    assert "chained workflows loop" in plan.text


def test_a_loop_through_three_workflows_and_a_self_loop_are_refused(deploy, owner):
    deploy(doc(on={"workflow": "c-flow"}), workflow="a-flow")   # c -> a
    deploy(doc(on={"workflow": "a-flow"}), workflow="b-flow")   # a -> b
    deploy(doc(), workflow="c-flow")
    plan = plan_for("c-flow", doc(on={"workflow": "b-flow"}), owner)  # b -> c closes c -> a -> b -> c
    assert [e["message"].split(";")[0] for e in plan.plan["errors"]] == [
        "chained workflows loop: c-flow -> a-flow -> b-flow -> c-flow"]
    own = plan_for("c-flow", doc(on={"workflow": "c-flow"}), owner)
    assert "c-flow -> c-flow" in own.plan["errors"][0]["message"]


def test_a_chain_without_a_loop_plans_cleanly_and_other_environments_do_not_count(deploy, owner):
    deploy(doc(on={"workflow": "b-flow"}), workflow="a-flow", environment="staging")
    deploy(doc(), workflow="b-flow")
    assert not plan_for("b-flow", doc(on={"workflow": "a-flow"}), owner).has_errors


def workers_down(group="ingest"):
    Worker.objects.filter(groups__slug=group).update(last_heartbeat=timezone.now() - timedelta(hours=1))


def workers_up(group="ingest"):
    Worker.objects.filter(groups__slug=group).update(last_heartbeat=timezone.now())


def test_a_chained_run_refused_for_no_live_worker_starts_once_a_worker_comes_up(deploy, owner, settings):
    settings.CHAIN_RETRY_INITIAL_S, settings.CHAIN_RETRY_MAX_DELAY_S = 5, 60
    upstream = deploy(doc(), workflow="ingest")
    downstream = deploy(doc(on={"workflow": "ingest"}), workflow="report")
    run = finished_run(upstream, owner)
    workers_down()
    t0 = timezone.now()

    assert chains_fire(now=t0) == 0
    link = ChainRun.objects.get()
    assert (link.error["error"], len(link.tries), link.next_try_at) == ("no_live_worker", 1, t0 + timedelta(seconds=5))
    assert chains_fire(now=t0 + timedelta(seconds=4)) == 0  # not due yet: no try
    assert chains_fire(now=t0 + timedelta(seconds=5)) == 0  # due: tried, refused again, the delay doubles
    link.refresh_from_db()
    assert (len(link.tries), link.next_try_at) == (2, t0 + timedelta(seconds=15))
    assert [t["at"] for t in link.tries] == [t0.isoformat(), (t0 + timedelta(seconds=5)).isoformat()]

    workers_up()
    assert chains_fire(now=t0 + timedelta(seconds=15)) == 1
    assert chains_fire(now=t0 + timedelta(seconds=600)) == 0  # started: never again
    link.refresh_from_db()
    chained = Execution.objects.get(deployment=downstream)
    assert (link.execution_id, link.error, link.next_try_at, len(link.tries)) == (chained.pk, None, None, 2)
    assert chained.input["upstream"]["execution"] == str(run.pk) and chained.trigger == Trigger.WORKFLOW


def test_the_retries_are_bounded_and_each_is_recorded(deploy, owner, settings):
    settings.CHAIN_RETRY_MAX_TRIES, settings.CHAIN_RETRY_INITIAL_S, settings.CHAIN_RETRY_MAX_DELAY_S = 4, 1, 2
    upstream = deploy(doc(), workflow="ingest")
    deploy(doc(on={"workflow": "ingest"}), workflow="report")
    finished_run(upstream, owner)
    workers_down()
    t0 = timezone.now()

    for second in range(0, 60):
        chains_fire(now=t0 + timedelta(seconds=second))

    link = ChainRun.objects.get()
    assert (len(link.tries), link.next_try_at, link.execution) == (4, None, None)  # gave up after 4
    offsets = [(datetime.fromisoformat(t["at"]) - t0).total_seconds() for t in link.tries]
    assert offsets == [0, 1, 3, 5]  # 1 s, then doubling, capped at 2 s
    workers_up()
    assert chains_fire(now=t0 + timedelta(hours=1)) == 0  # given up stays given up


def test_a_refusal_no_retry_can_mend_is_recorded_once(deploy, owner, settings):
    upstream = deploy(doc(), workflow="ingest")
    downstream = deploy(doc(on={"workflow": "ingest"}), workflow="report")
    finished_run(upstream, owner)
    JobDeployment.objects.filter(deployment=downstream).delete()  # nothing deployed any more
    t0 = timezone.now()

    assert chains_fire(now=t0) == 0 and chains_fire(now=t0 + timedelta(hours=1)) == 0
    link = ChainRun.objects.get()
    assert (link.error["error"], len(link.tries), link.next_try_at) == ("not_deployed", 1, None)


def test_a_paused_downstream_waits_without_spending_its_tries(deploy, owner, settings):
    from controlplane.deployments.services import deployment_pause, deployment_resume

    settings.CHAIN_RETRY_INITIAL_S = 1
    upstream = deploy(doc(), workflow="ingest")
    downstream = deploy(doc(on={"workflow": "ingest"}), workflow="report")
    finished_run(upstream, owner)
    workers_down()
    t0 = timezone.now()
    chains_fire(now=t0)
    deployment_pause(deployment=downstream, user=owner)

    assert chains_fire(now=t0 + timedelta(seconds=30)) == 0
    assert len(ChainRun.objects.get().tries) == 1
    deployment_resume(deployment=downstream, user=owner)
    workers_up()
    assert chains_fire(now=t0 + timedelta(seconds=31)) == 1


def test_the_backoff_doubles_up_to_its_cap_even_after_a_great_many_tries(settings):
    from controlplane.triggers.services.chains import next_try_at

    settings.CHAIN_RETRY_MAX_TRIES, settings.CHAIN_RETRY_INITIAL_S, settings.CHAIN_RETRY_MAX_DELAY_S = 10_000, 5, 300
    t0 = timezone.now()
    assert [(next_try_at("no_live_worker", n, t0) - t0).total_seconds() for n in (1, 2, 3, 7, 5000)] == [
        5, 10, 20, 300, 300]
    assert next_try_at("no_live_worker", 10_000, t0) is None and next_try_at("unknown_group", 1, t0) is None
