"""Run the whole product on the embedded default and drive a demo workflow through its API.

Starts the web control plane, one Celery worker serving the demo's worker groups and beat, as
child processes of this command (stopped by process id on exit), then, as a user would: creates
a project and workflow over HTTP, writes the draft, publishes it, plans and applies it to the
`prod` environment, runs it, and prints the execution's timeline.
"""
from __future__ import annotations

import json
import os
import signal
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


class Command(BaseCommand):
    help = "Start web, a worker and beat on the embedded default and run the demo workflow end to end."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--exit-after-demo", action="store_true", help="stop everything once the demo ran")
        parser.add_argument("--timeout", type=float, default=120, help="seconds the demo may take")

    def handle(self, *args, port: int, exit_after_demo: bool, timeout: float, **options):
        from controlplane.fleet.models import WorkerGroup
        from controlplane.fleet.services import worker_group_create
        from controlplane.tenancy.models import Company

        call_command("migrate", interactive=False, verbosity=0)
        token = self._bootstrap_tenant()
        company = Company.objects.get(slug="demo")
        for slug in ("ingest", "load"):
            if not WorkerGroup.objects.filter(company=company, slug=slug).exists():
                worker_group_create(company=company, slug=slug, name=slug.title())
        queues = [g.queue_name for g in WorkerGroup.objects.filter(company=company)] + ["controlplane"]

        log_dir = Path(settings.VAR_DIR) / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        children: list[subprocess.Popen] = []
        try:
            children.append(self._spawn(log_dir / "web.log", [
                sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload",
            ]))
            children.append(self._spawn(log_dir / "worker.log", [
                sys.executable, "-m", "celery", "-A", "workers", "worker", "-Q", ",".join(queues),
                "-n", "embedded@%h", "-c", "2", "--loglevel", "INFO", "--without-gossip", "--without-mingle",
            ]))
            children.append(self._spawn(log_dir / "beat.log", [
                sys.executable, "-m", "celery", "-A", "workers", "beat", "--loglevel", "INFO",
                "--schedule", str(Path(settings.VAR_DIR) / "celerybeat-schedule"),
            ]))
            self.stdout.write(f"logs in {log_dir}; web on http://127.0.0.1:{port}/ (admin at /admin/)")
            api = Api(f"http://127.0.0.1:{port}/api/v1", token)
            wait_for(lambda: self._answers(api), timeout=60, what="the web server")
            self._wait_for_worker(company, children, timeout=60)
            execution = self._run_demo(api, company, timeout=timeout)
            if execution["status"] != "succeeded":
                raise CommandError(f"demo execution ended {execution['status']}: {json.dumps(execution)[:2000]}")
            self.stdout.write(self.style.SUCCESS("demo workflow succeeded end to end"))
            self.stdout.write(f"API token for user 'demo' (password 'demo-password'): {token}")
            if exit_after_demo:
                return
            self.stdout.write("serving; press Ctrl-C to stop")
            while all(child.poll() is None for child in children):
                time.sleep(1)
            raise CommandError("a child process exited; see the logs in " + str(log_dir))
        except KeyboardInterrupt:
            self.stdout.write("stopping")
        finally:
            for child in children:
                self._stop(child)

    def _bootstrap_tenant(self) -> str:
        from io import StringIO

        out = StringIO()
        call_command("bootstrap_tenant", username="demo", password="demo-password", company="demo", stdout=out)
        lines = [line.strip() for line in out.getvalue().splitlines() if line.strip()]
        if not lines:
            raise CommandError("bootstrap_tenant printed no token")
        return lines[-1].split()[-1]  # stdout carries the token alone; progress goes to stderr

    def _spawn(self, log_path: Path, argv: list[str]) -> subprocess.Popen:
        log = open(log_path, "ab")
        try:
            return subprocess.Popen(
                argv, cwd=settings.BASE_DIR, env=dict(os.environ, PYTHONUNBUFFERED="1"),
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        finally:
            log.close()

    def _stop(self, child: subprocess.Popen) -> None:
        if child.poll() is not None:
            return
        os.killpg(child.pid, signal.SIGTERM)
        try:
            child.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait(timeout=10)

    def _answers(self, api: Api) -> bool:
        try:
            api.call("GET", "/companies")
            return True
        except (CommandError, OSError):
            return False

    def _wait_for_worker(self, company, children, *, timeout: float) -> None:
        from controlplane.fleet.models import WorkerGroup
        from controlplane.fleet.selectors import live_workers

        def live():
            if any(child.poll() is not None for child in children):
                raise CommandError("a child process exited during start-up; see var/logs/")
            return all(live_workers(group).exists() for group in WorkerGroup.objects.filter(company=company))

        wait_for(live, timeout=timeout, what="the worker's first heartbeat")

    def _run_demo(self, api: Api, company, *, timeout: float) -> dict:
        stamp = time.strftime("%Y%m%d%H%M%S")
        _, _, project = api.call("POST", "/projects", {"company": company.id, "slug": f"demo-{stamp}", "name": "Demo"})
        _, _, workflow = api.call(
            "POST", "/workflows", {"project": project["id"], "slug": "orders", "name": "Orders demo"}
        )
        _, headers, _ = api.call("GET", f"/workflows/{workflow['id']}")
        etag = headers.get("ETag") or headers.get("Etag")
        # The graph is YAML; the API takes it as a document or as YAML text in `graph`.
        api.call("PATCH", f"/workflows/{workflow['id']}", {"graph": DEMO_GRAPH.read_text()}, headers={"If-Match": etag})
        _, _, version = api.call("POST", f"/workflows/{workflow['id']}/publish")
        self.stdout.write(f"published {workflow['slug']} v{version['number']} ({version['digest'][:19]}…)")
        _, _, plan = api.call("POST", "/plans", {
            "workflow": workflow["id"], "version": version["number"], "environment": "prod",
        })
        self.stdout.write("plan:\n" + "\n".join("  " + line for line in plan["text"].splitlines()))
        api.call("POST", f"/plans/{plan['id']}/apply")
        self.stdout.write("applied to environment prod")
        _, _, execution = api.call("POST", "/executions", {
            "workflow": workflow["id"], "environment": "prod", "input": {"requested_by": "bin/run"},
        })
        self.stdout.write(f"execution {execution['id']} dispatched")

        def finished():
            _, _, current = api.call("GET", f"/executions/{execution['id']}")
            return current if current["status"] not in ("pending", "running") else None

        result = wait_for(finished, timeout=timeout, what="the demo execution")
        _, _, timeline = api.call("GET", f"/executions/{execution['id']}/timeline")
        for step in timeline.get("steps", []):
            self.stdout.write(
                f"  {step.get('node_id', step.get('node')):<10} shard {step.get('shard', 0)} "
                f"{step['status']:<10} on {step.get('worker') or '-'}  output={json.dumps(step.get('output'))[:80]}"
            )
        return result
