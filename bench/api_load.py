"""Load on the execution start API: gunicorn serving the control plane, real Celery workers running the runs.

    python bench/api_load.py [--rate 50] [--seconds 60] [--clients 50] [--quick]

It creates its own PostgreSQL database (`flowplane_bench_api`, migrated here, dropped at the end)
and uses its own Redis database number (`--redis-db`, default 8, never 0). It sets up a tenant, a
project, a worker group with `celery worker` processes, and deploys a 3-step workflow
(noop -> jq -> noop) through the services, then serves the API with gunicorn
(`controlplane/gunicorn_conf.py`) and drives POST /api/v1/executions, each start followed by one
GET /api/v1/executions/{id}/timeline:

  open-loop    starts issued on a fixed schedule (`--rate` per second for `--seconds`) whatever the
               responses; latency runs from the scheduled time, so a stalled server is charged for
               the requests it held back (no coordinated omission)
  closed-loop  `--clients` clients, each starting a run as soon as its previous start (and timeline
               read) answered, for `--seconds`

For each it prints p50/p95/p99 latency, errors (non-2xx or exceptions) and throughput, then waits
(bounded) for every started run to finish and prints how many did. Targets: zero errors in both
phases, every run succeeded, and open-loop start p95 under `--p95-target-ms` (50); the exit code is
1 when one is missed.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
from _support import stop_process_groups, wait_until  # noqa: E402

DATABASE = "flowplane_bench_api"
SERVER = "postgresql://postgres@127.0.0.1:5432"
GROUP = "run"
COMPANY = "benchapi"
ENVIRONMENT = "bench"
GRAPH = {
    "nodes": [
        {"id": "receive", "type": "noop", "group": GROUP},
        {"id": "shape", "type": "jq", "group": GROUP, "config": {"program": "{order: .trigger.order, n: 1}"}},
        {"id": "done", "type": "noop", "group": GROUP},
    ],
    "edges": [{"from": "receive", "to": "shape"}, {"from": "shape", "to": "done"}],
}


def configure_environment(redis_db: int) -> None:
    """The environment of this process, the web server and the workers: production-like (no DEBUG)."""
    os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{DATABASE}"
    os.environ["CELERY_BROKER_URL"] = f"redis://127.0.0.1:6379/{redis_db}"
    os.environ["CELERY_RESULT_BACKEND"] = f"redis://127.0.0.1:6379/{redis_db}"
    os.environ["DJANGO_SETTINGS_MODULE"] = "controlplane.settings"
    os.environ["DEBUG"] = "0"
    os.environ.setdefault("SECRET_KEY", "benchmark-only-secret-key-not-used-elsewhere")
    # Plain HTTP on loopback: production's redirect to HTTPS would answer every request 301.
    os.environ.setdefault("SECURE_SSL_REDIRECT", "0")
    os.environ.setdefault("WORKER_HEARTBEAT_INTERVAL_S", "1")
    os.environ.setdefault("LOG_LEVEL", "WARNING")


# --------------------------------------------------------------------------- database and setup


def create_database() -> None:
    import psycopg

    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')  # a crashed earlier run's
        conn.execute(f'CREATE DATABASE "{DATABASE}"')


def drop_database() -> None:
    import psycopg
    from django.db import connections

    connections.close_all()
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')


@dataclass
class Tenant:
    token: str
    deployment_id: int
    workflow_id: int
    group: object


def setup_tenant() -> Tenant:
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    from controlplane.fleet.models import WorkerGroup
    from controlplane.fleet.services import worker_group_create
    from controlplane.tenancy.models import Company, Membership, Project, Role

    user = get_user_model().objects.create_user(username="bench-api", password=None)
    company = Company.objects.create(slug=COMPANY, name="Bench API")
    Membership.objects.create(user=user, company=company, role=Role.EDITOR)
    Project.objects.create(company=company, slug="bench", name="Bench")
    worker_group_create(company=company, slug=GROUP, name="Run")
    token, _ = Token.objects.get_or_create(user=user)
    group = WorkerGroup.objects.get(company=company, slug=GROUP)
    return Tenant(token=token.key, deployment_id=0, workflow_id=0, group=group)


def deploy_workflow(tenant: Tenant) -> None:
    """Publish, plan and apply the 3-step graph (planning needs the group's live workers)."""
    from django.contrib.auth import get_user_model
    from django.test.utils import override_settings

    from controlplane.deployments.services import plan_apply, plan_create
    from controlplane.tenancy.models import Project
    from controlplane.workflows import services

    user = get_user_model().objects.get(username="bench-api")
    project = Project.objects.get(company__slug=COMPANY, slug="bench")
    workflow = services.workflow_create(user=user, project=project, slug="orders", name="Orders", graph=GRAPH)
    version, _ = services.workflow_publish(user=user, workflow=workflow)
    plan = plan_create(workflow=workflow, version=version, environment=ENVIRONMENT, user=user)
    if plan.has_errors:
        raise RuntimeError(f"the bench graph does not plan: {plan.plan['errors']}")
    with override_settings(DEPLOY_GROW_POOLS=False):  # the measured pools are the ones started here
        deployment = plan_apply(plan=plan, user=user)
    tenant.deployment_id, tenant.workflow_id = deployment.pk, workflow.pk


# --------------------------------------------------------------------------- processes


def spawn(args: list[str], log_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    log = open(log_path, "wb")
    try:
        return subprocess.Popen(args, cwd=REPO, env={**os.environ, **(env or {})}, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        log.close()





def cpu_seconds(procs: list[subprocess.Popen]) -> float:
    """User + system CPU of every live process in the process groups of `procs` (from /proc)."""
    groups = {proc.pid for proc in procs}
    ticks = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) in groups:  # pgrp
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def start_web(log_path: Path, workers: int | None, threads: int | None) -> tuple[subprocess.Popen, int]:
    """gunicorn on 127.0.0.1, a free port chosen by the kernel; returns (process, port)."""
    env = {"WEB_BIND": "127.0.0.1:0"}
    if workers:
        env["WEB_CONCURRENCY"] = str(workers)
    if threads:
        env["WEB_THREADS"] = str(threads)
    proc = spawn([sys.executable, "-m", "gunicorn", "-c", "python:controlplane.gunicorn_conf", "controlplane.wsgi"],
                 log_path, env)

    def listening():
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited early:\n{log_path.read_text(errors='replace')[-3000:]}")
        match = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", log_path.read_text(errors="replace"))
        booted = log_path.read_text(errors="replace").count("Booting worker")
        return match and booted >= (workers or os.cpu_count() or 1) and int(match.group(1))

    return proc, wait_until(listening, 60, "gunicorn to listen")


# --------------------------------------------------------------------------- load


@dataclass
class Phase:
    name: str
    start_latencies: list[float] = field(default_factory=list)
    timeline_latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    execution_ids: list[str] = field(default_factory=list)
    elapsed: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, kind: str, latency: float | None, error: str | None = None, execution_id: str | None = None):
        with self.lock:
            if error is not None:
                self.errors.append(f"{kind}: {error}")
            elif kind == "start":
                self.start_latencies.append(latency)
            else:
                self.timeline_latencies.append(latency)
            if execution_id:
                self.execution_ids.append(execution_id)


class Client:
    """One keep-alive HTTP connection per thread, reopened after any failure.

    A connection that sat idle past the server's keep-alive timeout is closed by the server; the
    next request on it fails before the server read it (no response byte came back). Like
    urllib3's pool, such a request is sent once more on a new connection, and counted in
    `reconnects` so the report shows it; any other failure is an error.
    """

    def __init__(self, port: int, token: str, body: bytes) -> None:
        self.port, self.body, self.local = port, body, threading.local()
        self.headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
        self.reconnects = 0
        self._lock = threading.Lock()

    def _request(self, method: str, path: str, body: bytes | None) -> tuple[int, bytes]:
        conn = getattr(self.local, "conn", None)
        reused = conn is not None
        if conn is None:
            conn = self.local.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=self.headers)
            response = conn.getresponse()
            return response.status, response.read()
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            conn.close()
            self.local.conn = None
            if not reused:
                raise
            with self._lock:
                self.reconnects += 1
            return self._request(method, path, body)
        except Exception:
            conn.close()
            self.local.conn = None
            raise

    def start_and_read(self, phase: Phase, scheduled: float) -> None:
        """POST a start, then GET its timeline; the start's latency counts from `scheduled`."""
        try:
            status, payload = self._request("POST", "/api/v1/executions", self.body)
        except Exception as exc:
            phase.record("start", None, f"{type(exc).__name__}: {exc}")
            return
        done = time.perf_counter()
        if status != 201:
            phase.record("start", None, f"HTTP {status} {payload[:200]!r}")
            return
        execution_id = json.loads(payload)["id"]
        phase.record("start", done - scheduled, execution_id=execution_id)
        try:
            status, payload = self._request("GET", f"/api/v1/executions/{execution_id}/timeline", None)
        except Exception as exc:
            phase.record("timeline", None, f"{type(exc).__name__}: {exc}")
            return
        if status != 200:
            phase.record("timeline", None, f"HTTP {status} {payload[:200]!r}")
        else:
            phase.record("timeline", time.perf_counter() - done)


def open_loop(client: Client, rate: float, seconds: float, max_inflight: int) -> Phase:
    phase = Phase(f"open-loop {rate:g}/s for {seconds:g}s")
    total = int(rate * seconds)
    with ThreadPoolExecutor(max_workers=max_inflight, thread_name_prefix="open") as pool:
        began = time.perf_counter()
        for index in range(total):
            scheduled = began + index / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            pool.submit(client.start_and_read, phase, scheduled)
    phase.elapsed = time.perf_counter() - began
    return phase


def closed_loop(client: Client, clients: int, seconds: float) -> Phase:
    phase = Phase(f"closed-loop {clients} clients for {seconds:g}s")
    began = time.perf_counter()
    deadline = began + seconds

    def loop():
        while time.perf_counter() < deadline:
            client.start_and_read(phase, time.perf_counter())

    threads = [threading.Thread(target=loop, name=f"closed-{i}") for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 120)
    phase.elapsed = time.perf_counter() - began
    return phase


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def report(phase: Phase, client: Client) -> None:
    print(f"{phase.name}:")
    for label, values in [("start", phase.start_latencies), ("timeline", phase.timeline_latencies)]:
        ms = [v * 1000 for v in values]
        print(f"  {label:<9} n={len(ms):<6} p50 {percentile(ms, 50):7.1f} ms  p95 {percentile(ms, 95):7.1f} ms  "
              f"p99 {percentile(ms, 99):7.1f} ms  max {max(ms, default=float('nan')):7.1f} ms")
    print(f"  errors    {len(phase.errors)}" + (f" (first: {phase.errors[0]})" if phase.errors else "")
          + f"; {client.reconnects} requests resent after an idle keep-alive connection was closed")
    print(f"  throughput {len(phase.start_latencies) / phase.elapsed:.1f} starts/s over {phase.elapsed:.1f}s")


def wait_runs_finished(execution_ids: list[str], timeout: float) -> tuple[int, int]:
    """(finished, succeeded) of the runs, once all are final or `timeout` passed."""
    from controlplane.executions.models import TERMINAL_EXECUTION_STATUSES, Execution

    deadline = time.monotonic() + timeout
    while True:
        rows = dict(Execution.objects.filter(id__in=execution_ids).values_list("id", "status"))
        finished = [s for s in rows.values() if s in TERMINAL_EXECUTION_STATUSES]
        if len(finished) == len(execution_ids) or time.monotonic() > deadline:
            return len(finished), sum(1 for s in finished if s == "succeeded")
        time.sleep(0.5)


def run_phase(make, client: Client, finish_timeout: float, web: subprocess.Popen,
              workers: list[subprocess.Popen]) -> tuple[Phase, bool]:
    """Run one phase, report it with the CPU its processes used, and wait for its runs."""
    client.reconnects = 0
    before = cpu_seconds([web]), cpu_seconds(workers), time.process_time()
    phase = make()
    web_cpu, worker_cpu, own_cpu = cpu_seconds([web]) - before[0], cpu_seconds(workers) - before[1], \
        time.process_time() - before[2]
    report(phase, client)
    starts = max(len(phase.start_latencies), 1)
    print(f"  machine   load average {os.getloadavg()[0]:.1f} (other processes share these cores)")
    print(f"  cpu       web {web_cpu:.1f}s ({web_cpu / starts * 1000:.1f} ms/start), celery workers "
          f"{worker_cpu:.1f}s, load client {own_cpu:.1f}s, over {phase.elapsed:.1f}s on {os.cpu_count()} cores")
    finished, succeeded = wait_runs_finished(phase.execution_ids, finish_timeout)
    print(f"  runs      {len(phase.execution_ids)} started, {finished} finished, {succeeded} succeeded "
          f"(waited at most {finish_timeout:.0f}s)")
    ok = not phase.errors and succeeded == len(phase.execution_ids)
    return phase, ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=50, help="open-loop starts per second")
    parser.add_argument("--seconds", type=float, default=60, help="length of each phase")
    parser.add_argument("--clients", type=int, default=50, help="closed-loop clients")
    parser.add_argument("--quick", action="store_true", help="10 s phases (a smoke run)")
    parser.add_argument("--max-inflight", type=int, default=200, help="open-loop threads issuing requests")
    parser.add_argument("--p95-target-ms", type=float, default=50)
    parser.add_argument("--redis-db", type=int, default=8)
    parser.add_argument("--web-workers", type=int, default=None, help="WEB_CONCURRENCY (gunicorn_conf default)")
    parser.add_argument("--web-threads", type=int, default=None, help="WEB_THREADS (gunicorn_conf default)")
    parser.add_argument("--celery-workers", type=int, default=1)
    parser.add_argument("--celery-concurrency", type=int, default=2)
    parser.add_argument("--finish-timeout", type=float, default=300, help="bounded wait for the runs of a phase")
    parser.add_argument("--phases", default="open,closed", help="comma-separated: open, closed")
    args = parser.parse_args()
    if args.redis_db == 0:
        parser.error("--redis-db 0 is the production default database; pick another number")
    phases = {p.strip() for p in args.phases.split(",") if p.strip()}
    if not phases or phases - {"open", "closed"}:
        parser.error(f"--phases {args.phases!r}: give open, closed or both (comma-separated)")
    if args.quick:
        args.seconds = 10
    configure_environment(args.redis_db)

    create_database()
    import django

    django.setup()
    from django.core.management import call_command

    import redis

    procs: list[subprocess.Popen] = []
    workers: list[subprocess.Popen] = []
    log_dir = REPO / "var" / "bench"
    log_dir.mkdir(parents=True, exist_ok=True)
    results: list[tuple[Phase, bool]] = []
    try:
        call_command("migrate", interactive=False, verbosity=0)
        redis.Redis.from_url(os.environ["CELERY_BROKER_URL"]).flushdb()
        tenant = setup_tenant()
        for index in range(args.celery_workers):
            workers.append(spawn(
                [sys.executable, "-m", "celery", "-A", "workers", "worker", "-Q", tenant.group.queue_name,
                 "-n", f"benchapi{index}@%h", "-c", str(args.celery_concurrency), "--loglevel", "WARNING",
                 "--without-gossip", "--without-mingle"],
                log_dir / f"api-load-worker-{index}.log",
            ))
        procs.extend(workers)
        from controlplane.fleet.selectors import live_workers

        wait_until(lambda: live_workers(tenant.group).exclude(step_types=[]).count() >= args.celery_workers, 60,
                   "worker heartbeats")
        deploy_workflow(tenant)
        web, port = start_web(log_dir / "api-load-gunicorn.log", args.web_workers, args.web_threads)
        procs.append(web)
        body = json.dumps({"deployment": tenant.deployment_id, "input": {"order": 7}}).encode()
        client = Client(port, tenant.token, body)
        # Warm-up: imports, first connections of each web thread, the workers' first tasks.
        warm = closed_loop(client, 8, 3)
        wait_runs_finished(warm.execution_ids, args.finish_timeout)
        print(f"gunicorn {args.web_workers or 'default'} workers x {args.web_threads or 'default'} threads; "
              f"{args.celery_workers} celery worker x {args.celery_concurrency}; warm-up {len(warm.start_latencies)} "
              f"starts, {len(warm.errors)} errors")
        if "open" in phases:
            results.append(run_phase(lambda: open_loop(client, args.rate, args.seconds, args.max_inflight),
                                     client, args.finish_timeout, web, workers))
        if "closed" in phases:
            results.append(run_phase(lambda: closed_loop(client, args.clients, args.seconds),
                                     client, args.finish_timeout, web, workers))
    finally:
        stop_process_groups(procs)
        redis.Redis.from_url(os.environ["CELERY_BROKER_URL"]).flushdb()
        drop_database()

    missed = []
    for phase, ok in results:
        if not ok:
            missed.append(f"{phase.name}: {len(phase.errors)} errors or unfinished runs")
        if phase.name.startswith("open"):
            p95 = percentile([v * 1000 for v in phase.start_latencies], 95)
            if not p95 < args.p95_target_ms:
                missed.append(f"{phase.name}: start p95 {p95:.1f} ms >= {args.p95_target_ms:g} ms")
    print("targets: " + ("met" if not missed else "MISSED: " + "; ".join(missed)))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
