"""Run the whole product on the embedded default and drive a demo workflow through its API.

Starts the web control plane (gunicorn, as in production), one Celery worker serving the demo's
worker groups and beat, as child processes of this command, then, as a user would: finds or
creates the demo project and workflow over HTTP, writes the draft, publishes it, plans and
applies it to the `prod` environment, runs it, and prints the execution's timeline.

Lifecycle: it refuses a taken port and a var/ folder another run holds; SIGINT and SIGTERM stop
every child (warm shutdown, then SIGKILL of its process group) within 10 s; a child that exits
on its own stops the rest and fails the command; the children die with it even if it is killed
(controlplane/core/reaper.py).
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

DEMO_GRAPH = Path(settings.BASE_DIR) / "examples" / "demo-graph.yaml"
# The README's seeds beside the demo: (slug, name, graph, the status their run must end in).
SEEDS = (
    ("harvest", "API harvest", Path(settings.BASE_DIR) / "examples" / "demo-harvest.yaml", "succeeded"),
    ("booking", "Booking saga", Path(settings.BASE_DIR) / "examples" / "demo-booking.yaml", "compensated"),
)


class Api:
    """A tiny JSON client for the control plane's HTTP API."""

    def __init__(self, base: str, token: str) -> None:
        self.base = base.rstrip("/")
        self.token = token

    def call(self, method: str, path: str, body=None, *, headers=None, content_type="application/json"):
        data = None
        if body is not None:
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.base}{path}", data=data, method=method)
        request.add_header("Authorization", f"Token {self.token}")
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", content_type)
        for key, value in (headers or {}).items():
            request.add_header(key, value)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, dict(response.headers), json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            payload = exc.read()
            raise CommandError(f"{method} {path} -> {exc.code}: {payload[:2000].decode(errors='replace')}") from exc


def wait_for(predicate, *, timeout: float, what: str, interval: float = 0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise CommandError(f"timed out after {timeout:.0f}s waiting for {what}")


# Warm shutdown (SIGTERM) for this long, then SIGKILL: all stopped within 10 s. A worker's warm
# shutdown on the file broker takes 4-7 s on two busy cores (its consumer polls in 2 s slices,
# then the prefork pool is joined).
STOP_GRACE_S = 8.5
DEMO_USER, DEMO_PASSWORD, DEMO_COMPANY, DEMO_PROJECT, DEMO_WORKFLOW = "demo", "demo-password", "demo", "demo", "orders"


class Stop(Exception):
    """SIGINT or SIGTERM arrived: stop every child, then exit."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_stop(signum, frame):
    raise Stop(signum)


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM if this command dies, even by SIGKILL (Linux)."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As gunicorn binds: a socket left in TIME_WAIT by the last run does not count as taken.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


class Command(BaseCommand):
    help = "Start web, a worker and beat on the embedded default and run the demo workflow end to end."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--exit-after-demo", action="store_true", help="stop everything once the demo ran")
        parser.add_argument("--timeout", type=float, default=120, help="seconds the demo may take")

    def say(self, text: str, style=None) -> None:
        # Flushed line by line: whoever reads our stdout through a pipe sees whole lines at once.
        self.stdout.write(style(text) if style else text)
        self.stdout.flush()

    def handle(self, *args, port: int, exit_after_demo: bool, timeout: float, **options):
        if port_in_use(port):
            raise CommandError(
                f"port {port} on 127.0.0.1 is already in use; stop what listens there or pass --port <free port>"
            )
        var_dir = Path(settings.VAR_DIR)
        var_dir.mkdir(parents=True, exist_ok=True)
        lock = self._lock_var_dir(var_dir)
        children: dict[str, subprocess.Popen] = {}
        previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        self._reaper = self._start_reaper()
        try:
            self._serve(port, exit_after_demo, timeout, var_dir, children)
        except Stop as stop:
            self.say(f"stopping ({stop})")
        finally:
            # A second signal while stopping must not cut the stop short and leave children behind.
            for sig in previous:
                signal.signal(sig, signal.SIG_IGN)
            self._stop_all(children)
            self._release_reaper()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            lock.close()

    def _serve(self, port, exit_after_demo, timeout, var_dir, children) -> None:
        from controlplane.fleet.models import WorkerGroup
        from controlplane.fleet.services import worker_group_create
        from controlplane.tenancy.models import Company

        call_command("migrate", interactive=False, verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        token = self._bootstrap_tenant()
        company = Company.objects.get(slug=DEMO_COMPANY)
        for slug in ("ingest", "load"):
            if not WorkerGroup.objects.filter(company=company, slug=slug).exists():
                worker_group_create(company=company, slug=slug, name=slug.title())
        queues = [g.queue_name for g in WorkerGroup.objects.filter(company=company)] + ["controlplane"]

        log_dir = var_dir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        children["web"] = self._spawn(log_dir / "web.log", [
            sys.executable, "-m", "gunicorn", "-c", "python:controlplane.gunicorn_conf",
            "--bind", f"127.0.0.1:{port}",
        ])
        children["worker"] = self._spawn(log_dir / "worker.log", [
            sys.executable, "-m", "celery", "-A", "workers", "worker", "-Q", ",".join(queues),
            "-n", "embedded@%h", "-c", "2", "--loglevel", "INFO", "--without-gossip", "--without-mingle",
        ])
        children["beat"] = self._spawn(log_dir / "beat.log", [
            sys.executable, "-m", "celery", "-A", "workers", "beat", "--loglevel", "INFO",
            "--schedule", str(var_dir / "celerybeat-schedule"),
        ])
        self.say("started " + ", ".join(f"{name} (pid {child.pid})" for name, child in children.items()))
        self.say(f"logs in {log_dir}; web on http://127.0.0.1:{port}/ (admin at /admin/)")
        api = Api(f"http://127.0.0.1:{port}/api/v1", token)
        wait_for(lambda: self._children_alive(children, log_dir) and self._answers(api), timeout=60,
                 what="the web server")
        self._wait_for_worker(company, children, log_dir, timeout=60)
        execution = self._run_demo(api, company, timeout=timeout)
        if execution["status"] != "succeeded":
            raise CommandError(f"demo execution ended {execution['status']}: {json.dumps(execution)[:2000]}")
        self.say("demo workflow succeeded end to end", self.style.SUCCESS)
        pages = f"http://127.0.0.1:{port}"
        self.say(f"  pages: {pages}/workflows/{execution['workflow']}/ and {pages}/executions/{execution['id']}/")
        for slug, name, graph, expected in SEEDS:
            seeded = self._run_workflow(api, company, slug, name, graph, timeout=timeout)
            if seeded["status"] != expected:
                raise CommandError(f"seed {slug} ended {seeded['status']}, not {expected}: {json.dumps(seeded)[:2000]}")
            self.say(f"seed {slug} ended {expected} as it should; pages: {pages}/workflows/{seeded['workflow']}/ "
                     f"and {pages}/executions/{seeded['id']}/")
        self.say(f"API token for user '{DEMO_USER}' (password '{DEMO_PASSWORD}'): {token}")
        self.say(f"operator pages: http://127.0.0.1:{port}/login/ (sign in as {DEMO_USER} / {DEMO_PASSWORD})")
        if exit_after_demo:
            return
        self.say("serving; press Ctrl-C to stop")
        while self._children_alive(children, log_dir):
            time.sleep(0.5)

    def _lock_var_dir(self, var_dir: Path):
        """Hold var/run.lock for our lifetime: two runs on one var/ would share one broker folder."""
        import fcntl

        lock = open(var_dir / "run.lock", "a+")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "unknown"
            lock.close()
            raise CommandError(f"another run_embedded (pid {holder}) is using {var_dir}; stop it first")
        lock.truncate(0)
        lock.write(str(os.getpid()))
        lock.flush()
        return lock

    def _bootstrap_tenant(self) -> str:
        from io import StringIO

        out, progress = StringIO(), StringIO()
        call_command("bootstrap_tenant", username=DEMO_USER, password=DEMO_PASSWORD, company=DEMO_COMPANY,
                     stdout=out, stderr=progress)
        lines = [line.strip() for line in out.getvalue().splitlines() if line.strip()]
        if not lines:
            raise CommandError("bootstrap_tenant printed no token")
        return lines[-1]  # stdout carries the token alone; progress went to `progress`

    def _start_reaper(self) -> subprocess.Popen:
        """The process that stops our children's groups if we die (controlplane/core/reaper.py)."""
        return subprocess.Popen(
            [sys.executable, "-m", "controlplane.core.reaper", str(STOP_GRACE_S)], cwd=settings.BASE_DIR,
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )

    def _release_reaper(self) -> None:
        try:
            self._reaper.stdin.write(b"done\n")
            self._reaper.stdin.close()
            self._reaper.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self._reaper.kill()

    def _spawn(self, log_path: Path, argv: list[str]) -> subprocess.Popen:
        log = open(log_path, "ab")
        try:
            child = subprocess.Popen(
                argv, cwd=settings.BASE_DIR, env=dict(os.environ, PYTHONUNBUFFERED="1"),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                # Its own process group: a terminal's Ctrl-C reaches us only, and we stop the
                # children in order (warm shutdown first); and they die if we are killed: the
                # leader by PR_SET_PDEATHSIG at once, the whole group by the reaper.
                start_new_session=True, preexec_fn=_die_with_parent,
            )
        finally:
            log.close()
        self._reaper.stdin.write(f"{child.pid}\n".encode())
        self._reaper.stdin.flush()
        return child

    def _children_alive(self, children: dict[str, subprocess.Popen], log_dir: Path) -> bool:
        for name, child in children.items():
            code = child.poll()
            if code is not None:
                tail = (log_dir / f"{name}.log").read_text(errors="replace").splitlines()[-15:]
                raise CommandError(
                    f"{name} (pid {child.pid}) exited with code {code}; last lines of {log_dir / (name + '.log')}:\n"
                    + "\n".join("  " + line for line in tail)
                )
        return True

    def _stop_all(self, children: dict[str, subprocess.Popen]) -> None:
        """SIGTERM every child (warm shutdown), wait up to STOP_GRACE_S, then SIGKILL its group."""
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for child in children.values():
            try:
                child.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for name, child in children.items():
            if child.poll() is None:
                self.stderr.write(f"{name} (pid {child.pid}) still running after {STOP_GRACE_S:g} s; killing it")
            # The whole group: a worker's pool processes too, whether or not the worker exited.
            try:
                os.killpg(child.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                child.wait(timeout=1)
            except subprocess.TimeoutExpired:
                self.stderr.write(f"{name} (pid {child.pid}) did not stop")

    def _answers(self, api: Api) -> bool:
        try:
            api.call("GET", "/companies")
            return True
        except (CommandError, OSError):
            return False

    def _wait_for_worker(self, company, children, log_dir, *, timeout: float) -> None:
        from controlplane.fleet.models import WorkerGroup
        from controlplane.fleet.selectors import live_workers

        def live():
            self._children_alive(children, log_dir)
            return all(live_workers(group).exists() for group in WorkerGroup.objects.filter(company=company))

        wait_for(live, timeout=timeout, what="the worker's first heartbeat")

    def _find(self, api: Api, path: str, slug: str) -> dict | None:
        _, _, page = api.call("GET", f"{path}&limit=500")
        return next((item for item in page["results"] if item["slug"] == slug), None)

    def _run_demo(self, api: Api, company, *, timeout: float) -> dict:
        return self._run_workflow(api, company, DEMO_WORKFLOW, "Orders demo", DEMO_GRAPH, timeout=timeout)

    def _run_workflow(self, api: Api, company, slug: str, name: str, graph: Path, *, timeout: float) -> dict:
        """Publish `graph` as workflow `slug` of the demo project, plan, apply, run it; its final state."""
        # A second run finds the project and workflow of the first: publish returns the same
        # version, and apply updates the same deployment.
        project = self._find(api, f"/projects?company={company.id}", DEMO_PROJECT) or api.call(
            "POST", "/projects", {"company": company.id, "slug": DEMO_PROJECT, "name": "Demo"}
        )[2]
        workflow = self._find(api, f"/workflows?project={project['id']}", slug) or api.call(
            "POST", "/workflows", {"project": project["id"], "slug": slug, "name": name}
        )[2]
        _, headers, _ = api.call("GET", f"/workflows/{workflow['id']}")
        etag = headers.get("ETag") or headers.get("Etag")
        # The graph is YAML; the API takes it as a document or as YAML text in `graph`.
        api.call("PATCH", f"/workflows/{workflow['id']}", {"graph": graph.read_text()}, headers={"If-Match": etag})
        _, _, version = api.call("POST", f"/workflows/{workflow['id']}/publish")
        self.say(f"published {workflow['slug']} v{version['number']} ({version['digest'][:19]}…)")
        _, _, plan = api.call("POST", "/plans", {
            "workflow": workflow["id"], "version": version["number"], "environment": "prod",
        })
        self.say("plan:\n" + "\n".join("  " + line for line in plan["text"].splitlines()))
        api.call("POST", f"/plans/{plan['id']}/apply")
        self.say("applied to environment prod")
        _, _, execution = api.call("POST", "/executions", {
            "workflow": workflow["id"], "environment": "prod", "input": {"requested_by": "bin/run"},
        })
        self.say(f"execution {execution['id']} dispatched")

        def finished():
            _, _, current = api.call("GET", f"/executions/{execution['id']}")
            return current if current["status"] not in ("pending", "running", "compensating") else None

        result = wait_for(finished, timeout=timeout, what="the demo execution")
        _, _, timeline = api.call("GET", f"/executions/{execution['id']}/timeline")
        for step in timeline.get("steps", []):
            self.say(
                f"  {step.get('node_id', step.get('node')):<10} shard {step.get('shard', 0)} "
                f"{step['status']:<10} on {step.get('worker') or '-'}  output={json.dumps(step.get('output'))[:80]}"
            )
        return {**result, "workflow": workflow["id"]}
