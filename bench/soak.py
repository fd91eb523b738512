"""Soak the embedded default: bin/run under a steady load of runs, no crash, every run finished.

    .venv/bin/python bench/soak.py --minutes 3     # CI (.ci/run)
    .venv/bin/python bench/soak.py --minutes 30    # by hand

Starts the stack exactly as a user does (`bin/run`: web, worker and beat on SQLite and the file
broker) in a fresh temporary var/ folder on a free port, deploys two workflows beside the demo,
then starts one run a second, in turn: the demo (a fan-out with a chord of two shards and a
merge, across two worker groups, expected `succeeded`) and a saga whose last step fails for good
(expected `compensated`, its two completed steps undone in reverse). Throughout, every child
process of bin/run must stay alive (a worker that dies on a half-written message file, kombu
issue #1551, shows here). At the end it waits for the last runs, stops bin/run with SIGTERM and
checks it exits 0 within 10 s.

Prints runs started and finished (per expected state) and the lag from start to terminal state
(worst and median); exits non-zero on any crash, unfinished run or unexpected final state.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "bench"))
from _support import free_port  # noqa: E402

TERMINAL = {"succeeded", "failed", "compensated", "compensation_failed", "cancelled"}
SAGA_GRAPH = {
    "nodes": [
        {"id": "reserve", "type": "log", "group": "ingest", "config": {"message": "reserve"},
         "compensate": {"type": "log", "config": {"message": "release"}}},
        {"id": "charge", "type": "log", "group": "load", "config": {"message": "charge"},
         "compensate": {"type": "log", "config": {"message": "refund"}}},
        {"id": "ship", "type": "fail", "group": "ingest", "retry": {"max_attempts": 1},
         "config": {"message": "no courier (soak drill)", "retryable": False}},
    ],
    "edges": [{"from": "reserve", "to": "charge"}, {"from": "charge", "to": "ship"}],
}


class Failure(Exception):
    """The soak failed; the message says how."""


class Api:
    def __init__(self, base: str, token: str) -> None:
        self.base, self.token = base, token

    def call(self, method: str, path: str, body=None, headers=None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Authorization", f"Token {self.token}")
        request.add_header("Content-Type", "application/json")
        for key, value in (headers or {}).items():
            request.add_header(key, value)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read() or b"null"), response.headers
        except urllib.error.HTTPError as exc:
            raise Failure(f"{method} {path} -> {exc.code}: {exc.read()[:500].decode(errors='replace')}") from exc


class Stack:
    """bin/run in the background, its output collected line by line."""

    def __init__(self, var_dir: Path, port: int) -> None:
        env = {k: v for k, v in os.environ.items()
               if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "SECRET_KEY", "DEBUG"}}
        env["FLOWPLANE_VAR_DIR"] = str(var_dir)
        self.var_dir, self.lines = var_dir, []
        self.process = subprocess.Popen(
            [str(REPO_ROOT / "bin" / "run"), "--port", str(port)], cwd=REPO_ROOT, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()
        self.children: dict[str, int] = {}

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if match := re.search(pattern, line):
                    return match
            if self.process.poll() is not None:
                time.sleep(0.5)  # let the reader take the last lines
                break
            time.sleep(0.2)
        raise Failure(f"bin/run printed no line matching {pattern!r}; its output:\n" + "\n".join(self.lines[-30:]))

    def check_alive(self) -> None:
        code = self.process.poll()
        if code is not None:
            raise Failure(f"bin/run exited with code {code}:\n" + "\n".join(self.lines[-30:]))
        for name, pid in self.children.items():
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except FileNotFoundError:
                state = "gone"
            if state in ("Z", "X", "gone"):
                log = self.var_dir / "logs" / f"{name}.log"
                tail = log.read_text(errors="replace").splitlines()[-20:] if log.exists() else []
                raise Failure(f"{name} (pid {pid}) died; last lines of {log}:\n" + "\n".join(tail))

    def stop(self, timeout: float = 10) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
            raise Failure(f"bin/run did not stop within {timeout:.0f} s of SIGTERM")


def deploy(api: Api, project_id: int, slug: str, graph: dict, environment: str) -> int:
    workflow, _ = api.call("POST", "/workflows", {"project": project_id, "slug": slug, "name": slug})
    _, headers = api.call("GET", f"/workflows/{workflow['id']}")
    api.call("PATCH", f"/workflows/{workflow['id']}", {"graph": graph}, headers={"If-Match": headers["ETag"]})
    version, _ = api.call("POST", f"/workflows/{workflow['id']}/publish")
    plan, _ = api.call("POST", "/plans", {"workflow": workflow["id"], "version": version["number"],
                                          "environment": environment})
    api.call("POST", f"/plans/{plan['id']}/apply")
    return workflow["id"]


def soak(minutes: float, settle_s: float) -> dict:
    var_dir = Path(tempfile.mkdtemp(prefix="flowplane-soak-")) / "var"
    port = free_port()
    stack = Stack(var_dir, port)
    try:
        stack.wait_for(r"^serving; press Ctrl-C to stop$", timeout=300)
        started = stack.wait_for(r"^started (.*)$", timeout=1).group(1)
        stack.children = {name: int(pid) for name, pid in re.findall(r"(\w+) \(pid (\d+)\)", started)}
        token = stack.wait_for(r"^API token for user .*: ([0-9a-f]+)$", timeout=1).group(1)
        api = Api(f"http://127.0.0.1:{port}/api/v1", token)
        demo = next(w for w in api.call("GET", "/workflows?limit=500")[0]["results"] if w["slug"] == "orders")
        saga = deploy(api, demo["project"], "soak-saga", SAGA_GRAPH, "prod")
        kinds = [("fanout", demo["id"], "succeeded"), ("saga", saga, "compensated")]

        outstanding: dict[str, tuple[str, str, float]] = {}  # id -> (kind, expected, started at)
        finished: list[tuple[str, str, str, float]] = []  # (kind, expected, status, lag)
        started_runs = 0
        end_at = time.monotonic() + minutes * 60
        next_start = time.monotonic()
        next_report = next_start + 60
        print(f"soak: {minutes:g} min, one run a second, stack on port {port}, var dir {var_dir}", flush=True)
        while time.monotonic() < end_at or (outstanding and time.monotonic() < end_at + settle_s):
            stack.check_alive()
            now = time.monotonic()
            if now < end_at and now >= next_start:
                kind, workflow_id, expected = kinds[started_runs % len(kinds)]
                execution, _ = api.call("POST", "/executions", {
                    "workflow": workflow_id, "environment": "prod", "input": {"soak": started_runs},
                })
                outstanding[execution["id"]] = (kind, expected, now)
                started_runs += 1
                next_start += 1.0
            for execution_id, (kind, expected, at) in list(outstanding.items()):
                current, _ = api.call("GET", f"/executions/{execution_id}")
                if current["status"] in TERMINAL:
                    finished.append((kind, expected, current["status"], time.monotonic() - at))
                    del outstanding[execution_id]
            if now >= next_report:
                print(f"  {started_runs} started, {len(finished)} finished, {len(outstanding)} running", flush=True)
                next_report += 60
            time.sleep(0.2)
        stack.check_alive()
        code = stack.stop()
        if code != 0:
            raise Failure(f"bin/run exited with code {code} on SIGTERM:\n" + "\n".join(stack.lines[-30:]))
        result = {"started": started_runs, "finished": finished, "unfinished": outstanding}
    except Failure as failure:
        raise Failure(f"{failure}\n(var dir kept for a look: {var_dir})") from failure
    finally:
        if stack.process.poll() is None:
            stack.stop()
    shutil.rmtree(var_dir.parent, ignore_errors=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3, help="how long to keep starting runs (default 3)")
    parser.add_argument("--settle", type=float, default=120, help="seconds the last runs may take to finish")
    args = parser.parse_args(argv)
    try:
        result = soak(args.minutes, args.settle)
    except Failure as failure:
        print(f"soak FAILED: {failure}", file=sys.stderr)
        return 1
    finished = result["finished"]
    wrong = [(kind, expected, status) for kind, expected, status, _ in finished if status != expected]
    lags = [lag for *_, lag in finished]
    by_kind = {}
    for kind, expected, status, _ in finished:
        by_kind.setdefault(f"{kind} {status}", 0)
        by_kind[f"{kind} {status}"] += 1
    print(f"runs started: {result['started']}")
    print(f"runs finished: {len(finished)} ({', '.join(f'{n} {k}' for k, n in sorted(by_kind.items()))})")
    if lags:
        print(f"lag start->terminal: worst {max(lags):.2f} s, median {statistics.median(lags):.2f} s")
    print("process crashes: 0 (web, worker, beat alive throughout; bin/run exited 0 on SIGTERM)")
    if result["unfinished"]:
        print(f"soak FAILED: {len(result['unfinished'])} run(s) unfinished: {sorted(result['unfinished'])[:10]}",
              file=sys.stderr)
        return 1
    if wrong:
        print(f"soak FAILED: {len(wrong)} run(s) ended in an unexpected state: {wrong[:10]}", file=sys.stderr)
        return 1
    if not finished:
        print("soak FAILED: no run finished", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
