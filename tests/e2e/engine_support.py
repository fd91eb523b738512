"""Fixtures of the engine's end-to-end tests: two worker groups with a worker process each, a
local HTTP server that records (and can fail, hold or de-duplicate) side effects, and helpers.

Executions run deployments: a test deploys its graph first ("given a deployed workflow"),

    deployment = make_deployment(project, [job("a"), job("b", group="load")], edges(("a", "b")), user=owner)
    execution = run_to_end(deployment, owner)

which plans and applies it onto the real workers through the deployment services.
"""
from __future__ import annotations

import collections
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import tests.e2e.callables  # noqa: F401  (registers `e2e.*` callables here too: planning validates them)
from controlplane.executions.models import TERMINAL_EXECUTION_STATUSES, Execution
from controlplane.executions.services import execution_start
from controlplane.fleet.selectors import live_workers
from tests.controlplane.executions.builders import deploy_version, make_deployment, make_group  # noqa: F401
from tests.e2e.harness import wait_until

WORKER_ENV = {
    "WORKER_HEARTBEAT_INTERVAL_S": "0.5",
    "PIPELINES_CALLABLE_MODULES": "pipelines.steps.builtin_callables,tests.e2e.callables",
}
HOSTS = {"ingest": "ingest1@e2e", "load": "load1@e2e"}


@dataclass
class Fleet:
    groups: dict
    workers: dict

    def queue(self, slug: str) -> str:
        return self.groups[slug].queue_name


def wait_live(group, timeout: float = 20):
    """A live worker in `group` that advertised its step types (what planning checks)."""
    wait_until(lambda: live_workers(group).exclude(step_types=[]).exists(), timeout=timeout,
               what=f"a live worker in {group.slug}")


@pytest.fixture
def fleet(start_worker, company, landing_dir):
    """Groups `ingest` and `load` of acme, each served by its own worker process.

    Workers are per test on purpose: `start_worker` stops them before the database is truncated
    at teardown; a worker still heartbeating during TRUNCATE can deadlock it (seen when they were
    shared per module).
    """
    groups = {slug: make_group(company, slug) for slug in HOSTS}
    env = {**WORKER_ENV, "LANDING_STORE_URL": f"file://{landing_dir}"}
    workers = {
        slug: start_worker([groups[slug].queue_name], HOSTS[slug], extra_env=env, wait=False)
        for slug in HOSTS
    }
    for slug, worker in workers.items():
        worker.wait_ready()
        wait_live(groups[slug])
    return Fleet(groups, workers)


def run_to_end(deployment, user, input=None, timeout: float = 30, **kwargs) -> Execution:
    """Start a run of `deployment` and wait (bounded) until it reaches a final status."""
    execution, _ = execution_start(deployment=deployment, input=input or {}, user=user, **kwargs)
    return wait_for_end(execution, timeout=timeout)


def wait_for_end(execution, timeout: float = 30) -> Execution:
    """Wait (bounded) for an execution (instance or id) to reach a final status; the fresh row."""
    pk = getattr(execution, "pk", execution)
    return wait_until(
        lambda: Execution.objects.filter(pk=pk, status__in=TERMINAL_EXECUTION_STATUSES).first(),
        timeout=timeout,
        what=f"execution {pk} to finish",
    )


@dataclass
class Recorder:
    """What the local server saw. `effects[path]` counts side effects (distinct idempotency keys)."""

    calls: list = field(default_factory=list)
    effects: collections.Counter = field(default_factory=collections.Counter)
    responses: dict = field(default_factory=dict)
    fail: dict = field(default_factory=dict)
    hold: dict = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    base_url: str = ""

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def paths(self) -> list[str]:
        with self.lock:
            return [path for _, path, _ in self.calls]


def _handler(recorder: Recorder):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            key = self.headers.get("Idempotency-Key", "")
            path = self.path
            with recorder.lock:
                recorder.calls.append((self.command, path, key))
                status = recorder.fail.get(path)
                known = recorder.responses.get((path, key))
                if status is None and known is None:
                    recorder.effects[path] += 1
                    known = recorder.responses[(path, key)] = {"ok": True, "path": path, "effect": recorder.effects[path]}
                    held = recorder.hold.get(path)
                else:
                    held = None
            if held is not None:
                held.wait(30)
            body = json.dumps(known if status is None else {"error": "refused"}).encode()
            try:
                self.send_response(status or 200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:  # the caller died while we held the response
                pass

        do_GET = do_POST

    return Handler


@pytest.fixture
def recorder(company):
    """A local HTTP server on 127.0.0.1 recording requests; honours Idempotency-Key.

    Loopback is refused by the egress policy, so acme's allow-list opens exactly this server's port.
    """
    from controlplane.egress.services import egress_rule_create

    rec = Recorder()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(rec))
    server.daemon_threads = True
    rec.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    egress_rule_create(company=company, entry=f"127.0.0.1:{server.server_address[1]}",
                       description="the e2e test's recording server")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield rec
    for event in rec.hold.values():
        event.set()
    server.shutdown()
    server.server_close()
