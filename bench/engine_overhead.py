"""Engine overhead against bare Celery, measured in one run on the same Redis and workers.

Shapes (DESIGN.md / issue 3):
  chain20      a 20-step chain
  fanout100    1 -> 100 -> 1 (a chord of 100 and a join)
  concurrent   200 concurrent 3-step executions (reported as steps/second)

Bare Celery runs canvases of no-op tasks (`workers.baseline`); the engine runs published workflow
versions of `noop` steps through `execution_start`, with everything it does for real: claims,
context reads, event appends, PostgreSQL as the join's truth. Both are dispatched from this process
and served by the same `celery worker` processes on the same queue.

    python bench/engine_overhead.py [--repeat 5] [--workers 1] [--concurrency 2]

It uses its own PostgreSQL database (`flowplane_bench`, created and migrated here) and Redis
database 15, and stops the workers it started by process id.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
from _support import stop_process_groups, wait_until  # noqa: E402
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/flowplane_bench")
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("CELERY_RESULT_BACKEND", "redis://127.0.0.1:6379/15")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
os.environ.setdefault("WORKER_HEARTBEAT_INTERVAL_S", "1")
os.environ.setdefault("LOG_LEVEL", "WARNING")
# Measure workers configured as in production: no DEBUG query log.
os.environ.setdefault("DEBUG", "0")
os.environ.setdefault("SECRET_KEY", "benchmark-only-secret-key-not-used-elsewhere")

import django  # noqa: E402

QUEUE_GROUP = "run"
COMPANY = "bench"


def ensure_database() -> None:
    import psycopg

    name = os.environ["DATABASE_URL"].rsplit("/", 1)[1]
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        if not conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone():
            conn.execute(f'create database "{name}"')


def start_workers(count: int, concurrency: int, queue: str, log_dir: Path) -> list[subprocess.Popen]:
    procs = []
    for index in range(count):
        log = open(log_dir / f"bench-worker-{index}.log", "ab")  # kept across runs for post-mortems
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "workers", "worker", "-Q", queue,
                 "-n", f"bench{index}@%h", "-c", str(concurrency), "--include", "workers.baseline",
                 "--loglevel", "WARNING", "--without-gossip", "--without-mingle"],
                cwd=REPO, env=dict(os.environ), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        )
        log.close()
    return procs


# --------------------------------------------------------------------------- shapes as graphs


def chain_graph(length: int) -> dict:
    nodes = [{"id": f"s{i}", "type": "noop", "group": QUEUE_GROUP} for i in range(length)]
    edges = [{"from": f"s{i}", "to": f"s{i + 1}"} for i in range(length - 1)]
    return {"nodes": nodes, "edges": edges}


def fanout_graph(width: int) -> dict:
    nodes = [{"id": "start", "type": "noop", "group": QUEUE_GROUP}, {"id": "join", "type": "noop", "group": QUEUE_GROUP}]
    edges = []
    for i in range(width):
        nodes.append({"id": f"b{i}", "type": "noop", "group": QUEUE_GROUP})
        edges += [{"from": "start", "to": f"b{i}"}, {"from": f"b{i}", "to": "join"}]
    return {"nodes": nodes, "edges": edges}


# --------------------------------------------------------------------------- bare Celery


def bare_chain(noop, queue: str, length: int):
    from celery import chain

    return chain(*[noop.si().set(queue=queue) for _ in range(length)])


def bare_fanout(noop, queue: str, width: int):
    from celery import chain, chord, group

    return chain(
        noop.si().set(queue=queue),
        chord(group(noop.si().set(queue=queue) for _ in range(width)), noop.si().set(queue=queue)),
    )


class WaitTimedOut(RuntimeError):
    """A result did not arrive in time; the message says which side, what it waited on, and what
    the result backend (and for the engine, PostgreSQL) said about it then."""


def wait_for_result(result, timeout: float, side: str) -> None:
    """Wait for a canvas's last result. Not `get(propagate=True)`: that walks every parent of the
    result (each task of a chain, each member of a chord's group) and reads its state from Redis,
    client-side work that is not running the canvas (it doubled the bare fan-out's time)."""
    from celery.exceptions import TimeoutError as CeleryTimeout

    try:
        result.get(timeout=timeout, propagate=False, disable_sync_subtasks=False)
    except CeleryTimeout:
        meta = result.backend.get_task_meta(result.id)  # a plain GET, not the pub/sub that timed out
        raise WaitTimedOut(f"{side}: no result for task {result.id} after {timeout:.0f}s; the backend holds "
                           f"status {meta.get('status')}") from None
    if result.state != "SUCCESS":
        raise RuntimeError(f"{side}: task {result.id} ended {result.state}")


def time_bare(make_canvas, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        wait_for_result(make_canvas().apply_async(), 120, "bare Celery")
        times.append(time.perf_counter() - started)
    return times


def time_bare_concurrent(noop, queue: str, executions: int, steps: int) -> float:
    started = time.perf_counter()
    results = [bare_chain(noop, queue, steps).apply_async() for _ in range(executions)]
    for result in results:
        wait_for_result(result, 300, "bare Celery")
    return time.perf_counter() - started


# --------------------------------------------------------------------------- the engine


class Engine:
    def __init__(self) -> None:
        from django.contrib.auth import get_user_model

        from controlplane.fleet.models import WorkerGroup
        from controlplane.tenancy.models import Company, Membership, Project, Role
        from controlplane.workflows.models import Workflow

        self.user, _ = get_user_model().objects.get_or_create(username="bench")
        self.company, _ = Company.objects.get_or_create(slug=COMPANY, defaults={"name": "Bench"})
        Membership.objects.get_or_create(user=self.user, company=self.company, defaults={"role": Role.OWNER})
        self.project, _ = Project.objects.get_or_create(company=self.company, slug="bench", defaults={"name": "Bench"})
        if not WorkerGroup.objects.filter(company=self.company, slug=QUEUE_GROUP).exists():
            from controlplane.fleet.services import worker_group_create

            worker_group_create(company=self.company, slug=QUEUE_GROUP, name="Run")
        self.group = WorkerGroup.objects.get(company=self.company, slug=QUEUE_GROUP)
        self.Workflow = Workflow

    @property
    def queue(self) -> str:
        return self.group.queue_name

    def publish(self, slug: str, graph: dict):
        from controlplane.workflows import services

        workflow = self.Workflow.objects.filter(project=self.project, slug=slug).first()
        if workflow is None:
            workflow = services.workflow_create(user=self.user, project=self.project, slug=slug, name=slug, graph=graph)
        else:
            services.workflow_update_draft(user=self.user, workflow=workflow, expected_revision=None, graph=graph)
        version, _ = services.workflow_publish(user=self.user, workflow=workflow)
        return self.deploy(version)

    def deploy(self, version):
        """Executions run deployments: plan + apply the version (the bench's `version` is this deployment)."""
        from django.test.utils import override_settings

        from controlplane.deployments.services import plan_apply, plan_create

        plan = plan_create(workflow=version.workflow, version=version, environment="bench", user=self.user)
        if plan.has_errors:
            raise RuntimeError(f"the bench graph does not plan: {plan.plan['errors']}")
        # Engine and bare Celery are compared on the same fixed pools: apply must not grow them.
        with override_settings(DEPLOY_GROW_POOLS=False):
            return plan_apply(plan=plan, user=self.user)

    def start(self, deployment):
        from controlplane.executions.services import execution_start

        execution, _ = execution_start(deployment=deployment, input={}, idempotency_key=None, user=self.user)
        return execution.id

    def wait(self, execution_ids, timeout: float) -> None:
        """Wait the way the bare side does: on the result backend (the run's finish task), then
        check in PostgreSQL that every run really succeeded."""
        from celery.result import AsyncResult

        from controlplane.executions.models import Execution
        from controlplane.executions.dispatch import finish_task_id

        for execution_id in execution_ids:
            try:
                wait_for_result(AsyncResult(finish_task_id(execution_id)), timeout, "engine")
            except WaitTimedOut as exc:
                raise WaitTimedOut(f"{exc}; {self.describe(execution_id)}") from None
        statuses = dict(Execution.objects.filter(id__in=execution_ids).values_list("id", "status"))
        failed = [str(i) for i in execution_ids if statuses.get(i) != "succeeded"]
        if failed:
            raise RuntimeError(f"engine executions did not succeed: {failed[:5]}")

    @staticmethod
    def describe(execution_id) -> str:
        """What PostgreSQL says of a run: its status, its last events, its unfinished attempts."""
        from controlplane.executions.models import Execution

        execution = Execution.objects.get(pk=execution_id)
        events = list(execution.events.order_by("-seq").values_list("seq", "type")[:5])
        open_runs = list(execution.step_runs.exclude(status="succeeded").values_list("node_id", "attempt", "status"))
        return f"execution {execution_id} is {execution.status}, last events {events}, unfinished attempts {open_runs}"

    def time_runs(self, version, runs: int) -> list[float]:
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            self.wait([self.start(version)], timeout=120)
            times.append(time.perf_counter() - started)
        return times

    def time_concurrent(self, version, executions: int) -> float:
        started = time.perf_counter()
        ids = [self.start(version) for _ in range(executions)]
        self.wait(ids, timeout=300)
        return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15, help="timed runs of the chain and fan-out (medians)")
    parser.add_argument("--concurrent-repeat", type=int, default=3, help="timed rounds of the concurrent shape")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--executions", type=int, default=200, help="concurrent 3-step executions")
    parser.add_argument("--max-ratio", type=float, default=1.5,
                        help="target: the worst shape's engine/bare ratio (exit 1 above it)")
    args = parser.parse_args()

    ensure_database()
    django.setup()
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    # Start every measurement from the same state: this database is the benchmark's own, and
    # runs left by earlier benchmarks would add table bloat and autovacuum work to this one.
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE executions_execution CASCADE")
    import redis

    redis.Redis.from_url(os.environ["CELERY_BROKER_URL"]).flushdb()

    from workers.baseline import noop

    engine = Engine()
    log_dir = REPO / "var" / "bench"
    log_dir.mkdir(parents=True, exist_ok=True)
    procs = start_workers(args.workers, args.concurrency, engine.queue, log_dir)
    try:
        from controlplane.fleet.selectors import live_workers

        wait_until(lambda: live_workers(engine.group).count() >= args.workers, 60, "worker heartbeats", 0.2)
        versions = {
            "chain20": engine.publish("chain20", chain_graph(20)),
            "fanout100": engine.publish("fanout100", fanout_graph(100)),
            "concurrent": engine.publish("chain3", chain_graph(3)),
        }
        # Warm-up: the first canvases pay for connections and imports on both sides.
        time_bare(lambda: bare_chain(noop, engine.queue, 3), 2)
        engine.time_runs(versions["concurrent"], 2)

        # Bare and engine runs alternate, so both see the same background load on this machine.
        rows = []
        chain_bare, chain_engine, fan_bare, fan_engine, conc_bare, conc_engine = ([] for _ in range(6))
        steps = args.executions * 3
        for _ in range(args.repeat):
            chain_bare += time_bare(lambda: bare_chain(noop, engine.queue, 20), 1)
            chain_engine += engine.time_runs(versions["chain20"], 1)
            fan_bare += time_bare(lambda: bare_fanout(noop, engine.queue, 100), 1)
            fan_engine += engine.time_runs(versions["fanout100"], 1)
        for _ in range(args.concurrent_repeat):
            conc_bare.append(steps / time_bare_concurrent(noop, engine.queue, args.executions, 3))
            conc_engine.append(steps / engine.time_concurrent(versions["concurrent"], args.executions))
        for name, bare_times, engine_times in [("20-step chain (s)", chain_bare, chain_engine),
                                               ("1->100->1 fan-out (s)", fan_bare, fan_engine)]:
            bare, eng = statistics.median(bare_times), statistics.median(engine_times)
            rows.append((name, bare, eng, eng / bare))
        bare_rate, eng_rate = statistics.median(conc_bare), statistics.median(conc_engine)
        rows.append((f"{args.executions} concurrent 3-step (steps/s)", bare_rate, eng_rate, bare_rate / eng_rate))
    finally:
        stop_process_groups(procs)

    print(f"engine overhead vs bare Celery ({args.workers} worker x {args.concurrency} processes, "
          f"medians of {args.repeat} alternating runs, {args.concurrent_repeat} concurrent rounds; "
          f"ratio = engine cost / bare cost, target <= {args.max_ratio:g})")
    print(f"{'shape':<34}{'bare':>12}{'engine':>12}{'ratio':>8}")
    worst = 0.0
    for name, bare_value, engine_value, ratio in rows:
        worst = max(worst, ratio)
        print(f"{name:<34}{bare_value:>12.3f}{engine_value:>12.3f}{ratio:>8.2f}")
    met = worst <= args.max_ratio
    print(f"worst ratio {worst:.2f} ({'within' if met else 'ABOVE'} the {args.max_ratio:g}x target)")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
