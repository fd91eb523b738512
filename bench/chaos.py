"""Chaos bench: faults injected into runs in flight, on real workers, PostgreSQL and Redis.

    python bench/chaos.py --rounds N

Each round injects every fault kind once, into two runs held mid-step: a chain (before -> charge
-> after) and a fan-out (before -> charge x2 shards -> after), where `charge` is an `http` step
whose call a local server on 127.0.0.1 holds until the fault is in, then releases. The kinds:

  control               no fault: the baseline (release -> finished), for the allowance below
  worker_kill9          kill -9 of the worker running the step (its process group), and a
                        replacement under another node name (the offline sweep recovers)
  pool_child_kill9      kill -9 of the pool child that claimed the step (StepRun.pid)
  same_name_replaced    kill -9 of the worker, a new process under the same node name
  redis_restart         the broker restarted without persistence (SHUTDOWN NOSAVE, start again)
  redis_restart_aof     the broker restarted with AOF, appendfsync always (switched on, without a
                        restart, just before the runs start; off again after)
  pg_connections_cut    pg_terminate_backend of every worker connection (this bench's database only)

It prints one line per kind: runs started, lost (not terminal RUN_WAIT_S after the fault), wrongly
failed (terminal but not succeeded: every run here should succeed), double effects (a logical
effect, one step shard of one run, completed more than once at the server, which performs an effect
once per Idempotency-Key), recovery time (fault injected -> run finished; max and median), and
workers crashed (worker processes that died of the fault although the bench did not kill them;
they are replaced, as a supervisor would). It exits 1 when any kind misses a target: 0 lost,
0 wrongly failed, 0 double effects, 0 workers crashed, every recovery within
WORKER_OFFLINE_AFTER_S + SWEEP_INTERVAL_S + ALLOWANCE_S; 2 when the bench itself failed.
`--kinds a,b` runs a subset, `--verbose` prints each run's events relative to its fault.

What it sets up, and removes on exit (also on Ctrl-C and failure): its own database
`flowplane_chaos` on the PostgreSQL at 127.0.0.1:5432 (created, migrated, dropped), its own
redis-server on a free port (`--save "" --appendonly no`; AOF is switched on at run time only for
the AOF kind), two `celery worker` processes (and their replacements, stopped by process group),
and the effect server. The sweep runs as beat would: the `flowplane.sweep` task body, called in a
thread of this process every SWEEP_INTERVAL_S. Worker logs stay in var/chaos/ for post-mortems.
"""
from __future__ import annotations

import argparse
import os
import secrets
import signal
import statistics
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _support import REPO, EffectServer, RedisServer, Worker, wait_until  # noqa: E402

DATABASE = "flowplane_chaos"
ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
HEARTBEAT_S = 0.5
OFFLINE_AFTER_S = 3.0
STALL_AFTER_S = 3.0
SWEEP_INTERVAL_S = 1.0
# Recovery ends when the run is finished, not when its step is re-published: the allowance covers
# the run's remaining work after that (the re-run of `charge`, answered by the server's replay,
# the join of the shards and `after`), and a worker's reconnection to a restarted Redis.
ALLOWANCE_S = 3.0
RECOVERY_TARGET_S = OFFLINE_AFTER_S + SWEEP_INTERVAL_S + ALLOWANCE_S
RUN_WAIT_S = 60.0  # a run not finished this long after its fault is lost
HELD_WAIT_S = 30.0  # for a run to reach its held call before the fault
WORKERS, CONCURRENCY = 2, 2
WORKER_APP_NAME = "flowplane-chaos-worker"  # PGAPPNAME of the workers: what the connection cut targets
GROUP = "work"
LOG_DIR = REPO / "var" / "chaos"  # worker logs, kept for post-mortems (each start writes a new file)


def log(message: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- setup


def configure_environment(redis_url: str, effect_port: int) -> dict:
    """This process's settings (read when Django starts) and the workers' environment."""
    values = {
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DATABASE}",
        "CELERY_BROKER_URL": redis_url,
        "CELERY_RESULT_BACKEND": redis_url,
        "DJANGO_SETTINGS_MODULE": "controlplane.settings",
        "WORKER_HEARTBEAT_INTERVAL_S": str(HEARTBEAT_S),
        "WORKER_OFFLINE_AFTER_S": str(OFFLINE_AFTER_S),
        "EXECUTION_STALL_AFTER_S": str(STALL_AFTER_S),
        # Loopback is refused by the egress policy unless opened: open exactly the effect server.
        "EGRESS_ALLOW": f"127.0.0.1:{effect_port}",
        "LOG_LEVEL": "ERROR",  # this process: the sweep's recovery warnings would drown the report
        "DEBUG": "0",
        "SECRET_KEY": os.environ.get("SECRET_KEY") or "chaos-bench-only-" + secrets.token_hex(16),
        "PYTHONUNBUFFERED": "1",
    }
    os.environ.update(values)
    return {**os.environ, "PGAPPNAME": WORKER_APP_NAME, "LOG_LEVEL": "INFO"}


def admin_execute(sql: str) -> None:
    import psycopg

    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(sql)


def database_create() -> None:
    # The name is the bench's own; a copy left by a bench that was killed is dropped first.
    admin_execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
    admin_execute(f'CREATE DATABASE "{DATABASE}"')


def database_drop() -> None:
    from django.conf import settings

    if settings.configured:
        from django.db import connections

        connections.close_all()
    admin_execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')


def chain_graph(url: str) -> dict:
    return {"nodes": [
        {"id": "before", "type": "noop", "group": GROUP},
        # Lost attempts count against max_attempts: a killed child or worker uses one up.
        {"id": "charge", "type": "http", "group": GROUP, "timeout_s": 60, "retry": {"max_attempts": 3},
         "config": {"url": url, "method": "POST", "timeout_s": 60,
                    "json": {"effect": "{{ .execution.id }}:charge:0"}}},
        {"id": "after", "type": "noop", "group": GROUP},
    ], "edges": [{"from": "before", "to": "charge"}, {"from": "charge", "to": "after"}]}


def fanout_graph(url: str) -> dict:
    graph = chain_graph(url)
    charge = graph["nodes"][1]
    charge["replicas"] = 2
    charge["config"]["json"] = {"effect": "{{ .execution.id }}:charge:{{ .shard.index }}"}
    return graph


class Tenant:
    """A company, project and worker group, and the two workflows deployed onto the group."""

    def __init__(self) -> None:
        from controlplane.fleet.services import worker_group_create
        from controlplane.tenancy.services import project_create, tenant_bootstrap

        boot = tenant_bootstrap(username="chaos", company_slug="chaos", password=secrets.token_urlsafe(24))
        self.user, self.company = boot.user, boot.company
        self.project = project_create(user=self.user, company=self.company, slug="chaos", name="Chaos")
        self.group = worker_group_create(company=self.company, slug=GROUP, name="Work")
        self.deployments: dict[str, object] = {}

    def deploy(self, slug: str, graph: dict):
        from django.test.utils import override_settings

        from controlplane.deployments.services import plan_apply, plan_create
        from controlplane.workflows.services import workflow_create, workflow_publish

        workflow = workflow_create(user=self.user, project=self.project, slug=slug, name=slug, graph=graph)
        version, _ = workflow_publish(user=self.user, workflow=workflow)
        plan = plan_create(workflow=workflow, version=version, environment="chaos", user=self.user)
        if plan.has_errors:
            raise RuntimeError(f"the chaos graph {slug!r} does not plan: {plan.plan['errors']}")
        with override_settings(DEPLOY_GROW_POOLS=False):  # the pools stay as started: 2 x 2 processes
            self.deployments[slug] = plan_apply(plan=plan, user=self.user)

    def start(self, slug: str) -> str:
        from controlplane.executions.services import execution_start

        execution, _ = execution_start(deployment=self.deployments[slug], input={}, user=self.user)
        return str(execution.pk)


class Sweeper(threading.Thread):
    """Beat's job, in this process: the `flowplane.sweep` task body every SWEEP_INTERVAL_S."""

    def __init__(self) -> None:
        super().__init__(name="chaos-sweep", daemon=True)
        self.halt = threading.Event()
        self.errors = 0

    def run(self) -> None:
        from django.db import connection

        from workers.tasks import sweep

        while not self.halt.wait(SWEEP_INTERVAL_S):
            try:
                sweep()
            except Exception as exc:  # beat would run it again next interval; so do we
                self.errors += 1
                log(f"sweep failed ({type(exc).__name__}: {str(exc).strip()[:200]}); next interval retries")
                connection.close()
        connection.close()
        results_unsubscribe()  # this thread's own (Celery's backend is per thread)

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=30)


# --------------------------------------------------------------------------- the bench


@dataclass
class Tally:
    started: int = 0
    lost: int = 0
    wrongly_failed: int = 0
    double_effects: int = 0
    workers_crashed: int = 0  # exits the bench did not cause (replaced, and a missed target)
    recoveries: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    def missed(self) -> list[str]:
        if not self.started:
            return ["not run"]
        out = [f"{n} {what}" for n, what in [(self.lost, "lost"), (self.wrongly_failed, "wrongly failed"),
                                              (self.double_effects, "double effects")] if n]
        if self.recoveries and max(self.recoveries) > RECOVERY_TARGET_S:
            out.append(f"recovery {max(self.recoveries):.1f}s > {RECOVERY_TARGET_S:.1f}s")
        if self.workers_crashed:
            out.append(f"{self.workers_crashed} workers crashed")
        return out


class Bench:
    def __init__(self, workdir: Path, verbose: bool = False) -> None:
        self.workdir, self.verbose = workdir, verbose
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.effects = EffectServer(hold_max_s=RUN_WAIT_S).start()
        self.redis = RedisServer(workdir / "redis")
        self.redis.start(aof=False)
        self.worker_env = configure_environment(self.redis.url, self.effects.port)
        self.workers: list[Worker] = []
        self.names = iter(range(1, 10 ** 6))
        self.sweeper: Sweeper | None = None
        self.tenant: Tenant | None = None

    # ---- fleet

    def worker_start(self, hostname: str | None = None) -> Worker:
        hostname = hostname or f"chaos{next(self.names)}@bench"
        worker = Worker(hostname, self.tenant.group.queue_name, self.worker_env, LOG_DIR, CONCURRENCY).start()
        self.workers.append(worker)
        return worker

    def worker_of(self, hostname: str) -> Worker:
        worker = next((w for w in self.workers if w.hostname == hostname and w.alive()), None)
        if worker is None:
            raise RuntimeError(f"the attempt's worker {hostname!r} is not a live worker of this bench")
        return worker

    def fleet_ready(self) -> None:
        """Every worker process ready, with its full pool, and live in PostgreSQL."""
        from controlplane.fleet.selectors import live_workers

        self.workers = [w for w in self.workers if not w.killed]
        for worker in self.workers:
            worker.wait_ready()
        wait_until(lambda: all(len(w.child_pids()) >= CONCURRENCY for w in self.workers), 30, "full worker pools")
        names = {w.hostname for w in self.workers}
        wait_until(lambda: names <= set(live_workers(self.tenant.group).exclude(step_types=[])
                                        .values_list("hostname", flat=True)), 30, f"live workers {sorted(names)}")

    def setup(self) -> None:
        database_create()
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", interactive=False, verbosity=0)
        import workers  # noqa: F401  (the Celery app this process publishes with)

        self.tenant = Tenant()
        for _ in range(WORKERS):
            self.worker_start()
        self.fleet_ready()
        self.tenant.deploy("chain", chain_graph(self.effects.url("/charge")))
        self.tenant.deploy("fanout", fanout_graph(self.effects.url("/charge")))
        self.sweeper = Sweeper()
        self.sweeper.start()

    def teardown(self) -> None:
        if self.sweeper is not None:
            self.sweeper.stop()
        results_unsubscribe()
        for worker in self.workers:
            try:
                worker.stop()
            except Exception as exc:
                log(f"stopping worker {worker.hostname} (pid {worker.pid}): {exc}")
        self.effects.stop()
        self.redis.stop()
        try:
            database_drop()
        except Exception as exc:
            log(f"could not drop database {DATABASE}: {exc}")

    # ---- one fault

    def held_attempt(self, run: str, shards_needed: int):
        """The run's `charge` attempt in flight with its call held at the server (chain: shard 0)."""
        from controlplane.executions.models import StepRun, StepStatus

        if len(self.effects.effects_of(run)) < shards_needed:
            return None
        return (StepRun.objects.filter(execution_id=run, node_id="charge", status=StepStatus.RUNNING,
                                       pid__isnull=False).order_by("shard").first())

    def inject(self, kind: str, tally: Tally) -> None:
        from controlplane.executions.models import TERMINAL_EXECUTION_STATUSES, Execution, ExecutionStatus

        self.replace_crashed(kind, tally)  # one that died late of the previous fault
        self.fleet_ready()
        if kind == "redis_restart_aof":
            self.redis.use_aof(True)
        runs = [self.tenant.start("chain"), self.tenant.start("fanout")]
        tally.started += len(runs)
        try:
            target = wait_until(lambda: self.held_attempt(runs[0], 1), HELD_WAIT_S, "the chain's call to be held")
            wait_until(lambda: self.held_attempt(runs[1], 1), HELD_WAIT_S, "a fan-out shard's call to be held")
        except TimeoutError as exc:
            # Not a recovery failure but the fleet not serving: these runs count as lost.
            tally.notes.append(f"no fault injected: {exc}")
            log(f"{kind}: {exc}; runs {runs}")
            target = None
        fault_at = time.time()
        if target is not None:
            FAULTS[kind](self, target)
        for run in runs:
            self.effects.release(run)
        finished = {}

        def all_finished():
            rows = Execution.objects.filter(pk__in=runs, status__in=TERMINAL_EXECUTION_STATUSES)
            finished.update({str(pk): (status, at) for pk, status, at in rows.values_list("pk", "status", "finished_at")})
            return len(finished) == len(runs)

        try:
            wait_until(all_finished, RUN_WAIT_S, f"runs {runs} to finish", interval=0.1)
        except TimeoutError:
            pass
        for run in runs:
            status, at = finished.get(run, (None, None))
            if status is None:
                tally.lost += 1
                log(f"{kind}: run {run} lost: {describe(run)}")
                continue
            if status != ExecutionStatus.SUCCEEDED:
                tally.wrongly_failed += 1
                log(f"{kind}: run {run} ended {status}: {describe(run)}")
            elif target is not None:
                tally.recoveries.append(max(0.0, at.timestamp() - fault_at))
            if self.verbose:
                log(f"{kind}: {'chain' if run == runs[0] else 'fanout'} run {run} {status} "
                    f"{(at.timestamp() - fault_at) if at else float('nan'):.2f}s after the fault; {timeline(run, fault_at)}")
            doubles = {effect: n for effect, n in self.effects.effects_of(run).items() if n > 1}
            if doubles:
                tally.double_effects += len(doubles)
                log(f"{kind}: run {run} double effects {doubles}")
        if kind == "redis_restart_aof":
            self.redis.use_aof(False)
        self.replace_crashed(kind, tally)

    def replace_crashed(self, kind: str, tally: Tally) -> None:
        """A worker that died of the fault (rather than by the bench's hand) is counted, stopped
        by its pid, and replaced, so the next fault meets a whole fleet."""
        for worker in [w for w in self.workers if w.crashed()]:
            tally.workers_crashed += 1
            lines = [line for line in worker.log_tail(20000).splitlines() if "CRITICAL" in line or "Error" in line]
            log(f"{kind}: worker {worker.hostname} (pid {worker.pid}) crashed "
                f"(exit {worker.process.poll()}): {' | '.join(lines[-3:])[:600]}; replacing it")
            worker.stop()
            self.workers.remove(worker)
            self.worker_start()


def results_unsubscribe() -> None:
    """Celery's Redis result backend (one per thread) subscribes the thread to the channel of every
    task it publishes; close that subscription before Redis stops, and forget its channels, or each
    result's finalizer retries unsubscribing against a stopped server (20 s at exit)."""
    from django.conf import settings

    if not settings.configured:
        return
    from workers.celery import app

    consumer = getattr(app.backend, "result_consumer", None)
    if consumer is not None:
        consumer.stop()
        consumer.subscribed_to.clear()


def describe(run: str) -> str:
    """What PostgreSQL says of a run: status, error, last events, attempts."""
    from controlplane.executions.models import Execution

    execution = Execution.objects.get(pk=run)
    events = list(execution.events.order_by("-seq").values_list("type", flat=True)[:6])
    attempts = list(execution.step_runs.order_by("id").values_list("node_id", "shard", "attempt", "status", "worker"))
    return f"status {execution.status}, error {execution.error}, last events {events}, attempts {attempts}"


def timeline(run: str, fault_at: float) -> str:
    """The run's events after the fault, each with its offset from the fault (for --verbose)."""
    from controlplane.executions.models import ExecutionEvent

    rows = ExecutionEvent.objects.filter(execution_id=run).order_by("seq").values_list("type", "created_at")
    return " ".join(f"{kind}@{at.timestamp() - fault_at:+.2f}" for kind, at in rows if at.timestamp() > fault_at - 1)


# --------------------------------------------------------------------------- the faults


def fault_worker_kill9(bench: Bench, target) -> None:
    bench.worker_of(target.worker).kill9()
    bench.worker_start()  # another node name: only the offline sweep can hand the work over


def fault_pool_child_kill9(bench: Bench, target) -> None:
    worker = bench.worker_of(target.worker)
    if target.pid not in worker.child_pids():  # never signal a process that is not our worker's child
        raise RuntimeError(f"attempt pid {target.pid} is not a pool process of {worker.hostname} (pid {worker.pid})")
    os.kill(target.pid, signal.SIGKILL)


def fault_same_name_replaced(bench: Bench, target) -> None:
    bench.worker_of(target.worker).kill9()
    bench.worker_start(target.worker)


def fault_redis_restart(bench: Bench, target) -> None:
    bench.redis.restart(aof=False)


def fault_redis_restart_aof(bench: Bench, target) -> None:
    bench.redis.restart(aof=True)


def fault_pg_connections_cut(bench: Bench, target) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                       " WHERE datname = current_database() AND application_name = %s", [WORKER_APP_NAME])
        cut = cursor.fetchone()[0]
    if not cut:
        raise RuntimeError(f"no worker connection (application_name {WORKER_APP_NAME!r}) to cut")


def no_fault(bench: Bench, target) -> None:
    """The baseline: the call is released and nothing else happens."""


FAULTS = {
    "control": no_fault,
    "worker_kill9": fault_worker_kill9,
    "pool_child_kill9": fault_pool_child_kill9,
    "same_name_replaced": fault_same_name_replaced,
    "redis_restart": fault_redis_restart,
    "redis_restart_aof": fault_redis_restart_aof,
    "pg_connections_cut": fault_pg_connections_cut,
}


def report(tallies: dict[str, Tally], rounds: int, elapsed: float) -> bool:
    print(f"chaos: {rounds} round(s), {elapsed:.0f}s; {WORKERS} workers x {CONCURRENCY} processes; targets: 0 lost, "
          f"0 wrongly failed, 0 double effects, 0 workers crashed, recovery <= {RECOVERY_TARGET_S:.1f}s (offline after "
          f"{OFFLINE_AFTER_S:g}s + sweep {SWEEP_INTERVAL_S:g}s + allowance {ALLOWANCE_S:g}s)")
    ok = True
    for kind, t in tallies.items():
        rec = (f"max {max(t.recoveries):5.1f}s median {statistics.median(t.recoveries):5.1f}s"
               if t.recoveries else "max     -  median     -")
        missed = t.missed()
        ok = ok and not missed
        print(f"{kind:<20} started {t.started:3d}  lost {t.lost}  wrongly failed {t.wrongly_failed}  "
              f"double effects {t.double_effects}  recovery {rec}  workers crashed {t.workers_crashed}  "
              f"{'ok' if not missed else 'MISSED: ' + ', '.join(missed)}", flush=True)
    return ok


def interrupt(signum, frame) -> None:
    """SIGTERM (CI cancelling the job) cleans up as Ctrl-C does."""
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1, help="rounds; each injects every fault kind once")
    parser.add_argument("--kinds", default=",".join(FAULTS), help="comma-separated subset of the kinds")
    parser.add_argument("--verbose", action="store_true", help="each run's events after its fault, on stderr")
    args = parser.parse_args()
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in FAULTS]
    if unknown or args.rounds < 1:
        parser.error(f"unknown kinds {unknown}; choose from {list(FAULTS)}" if unknown else "--rounds must be >= 1")

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started in the background
    started = time.monotonic()
    tallies = {kind: Tally() for kind in kinds}
    with tempfile.TemporaryDirectory(prefix="flowplane-chaos-") as tmp:
        bench = None
        try:
            bench = Bench(Path(tmp), verbose=args.verbose)
            bench.setup()
            log(f"set up in {time.monotonic() - started:.0f}s (redis on port {bench.redis.port}, "
                f"effect server on port {bench.effects.port})")
            for round_no in range(1, args.rounds + 1):
                for kind in kinds:
                    bench.inject(kind, tallies[kind])
                log(f"round {round_no}/{args.rounds} done")
            failure = None
        except KeyboardInterrupt:
            log("interrupted; cleaning up")
            failure = 130
        except Exception:
            log("the bench itself failed:\n" + traceback.format_exc())
            for worker in (bench.workers if bench else []):
                log(f"--- {worker.hostname} log tail:\n{worker.log_tail(1500)}")
            failure = 2
        finally:
            if bench is not None:
                bench.teardown()
    ok = report(tallies, args.rounds, time.monotonic() - started)
    return failure or (0 if ok else 1)


if __name__ == "__main__":
    sys.exit(main())
