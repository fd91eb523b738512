"""What a bench starts on this machine, and stops by process id: a private `redis-server`, `celery
worker` processes, and a local HTTP server that performs an effect once per Idempotency-Key.

Nothing here touches a server it did not start: Redis runs on a free port with its own directory,
workers get their own process group (killing the group kills exactly the worker and its pool).
"""
from __future__ import annotations

import collections
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]


def wait_until(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.1):
    """Poll `predicate` until it returns something truthy; TimeoutError naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_process_groups(procs: list[subprocess.Popen], timeout: float = 20) -> None:
    """SIGTERM each process group we started (by id), SIGKILL what is still there after `timeout` s."""
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


# --------------------------------------------------------------------------- Redis


class RedisServer:
    """A private redis-server on 127.0.0.1:`port`, data in `directory`. Never persists by RDB
    (`--save ""`); AOF only when asked (`aof=True`: `--appendonly yes --appendfsync always`)."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server is not on PATH; the chaos bench starts its own (Debian: apt-get install redis-server)")
        self.binary, self.directory, self.port = binary, directory, port or free_port()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process: subprocess.Popen | None = None
        self.aof = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self):
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def start(self, *, aof: bool = False) -> None:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
                "--save", "", "--appendonly", "yes" if aof else "no", "--daemonize", "no",
                "--logfile", str(self.directory / "redis.log")]
        if aof:
            args += ["--appendfsync", "always"]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        self.aof = aof

        def answers():
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server on port {self.port} exited ({self.process.returncode}); "
                                   f"see {self.directory / 'redis.log'}")
            try:
                return self.client().ping()
            except Exception:
                return False

        try:
            wait_until(answers, 10, f"redis-server on port {self.port}", interval=0.02)
        except BaseException:
            self.kill()
            raise

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def use_aof(self, enabled: bool) -> None:
        """Switch AOF on or off while running (no restart, nothing lost): on, it rewrites the
        dataset into a fresh AOF first, so a later restart with `aof=True` loads exactly that."""
        client = self.client()
        if enabled:
            client.config_set("appendfsync", "always")
        client.config_set("appendonly", "yes" if enabled else "no")

        def settled():
            info = client.info("persistence")
            return (info["aof_enabled"] == int(enabled) and not info["aof_rewrite_in_progress"]
                    and not info["aof_rewrite_scheduled"])

        wait_until(settled, 15, f"redis-server to turn AOF {'on' if enabled else 'off'}", interval=0.05)
        self.aof = enabled

    def shutdown_nosave(self) -> None:
        """SHUTDOWN NOSAVE (an AOF with fsync always is on disk already), then wait for the exit."""
        if self.process is None or self.process.poll() is not None:
            return
        # A bare socket, not redis-py: its client retries a command whose connection closed, with
        # backoff, against the server it is shutting down (seconds lost per restart).
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
                sock.sendall(b"SHUTDOWN NOSAVE\r\n")
                sock.recv(64)  # the server closes the connection as it goes: that is the answer
        except OSError:
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()

    def restart(self, *, aof: bool) -> None:
        self.shutdown_nosave()
        self.start(aof=aof)

    def stop(self) -> None:
        self.shutdown_nosave()


# --------------------------------------------------------------------------- workers


class Worker:
    """One `python -m celery -A workers worker` in its own process group."""

    def __init__(self, hostname: str, queue: str, env: dict, log_dir: Path, concurrency: int = 2) -> None:
        self.hostname, self.queue, self.env, self.concurrency = hostname, queue, env, concurrency
        self.log_path = log_dir / f"{hostname.replace('@', '_')}.{time.time_ns()}.log"
        self.process: subprocess.Popen | None = None
        self.killed = False  # by the bench, on purpose

    def start(self) -> "Worker":
        log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workers", "worker", "-Q", self.queue, "-n", self.hostname,
             "-c", str(self.concurrency), "--loglevel", "INFO", "--without-gossip", "--without-mingle"],
            cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        return self

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def wait_ready(self, timeout: float = 60) -> "Worker":
        def ready():
            if not self.alive():
                raise RuntimeError(f"worker {self.hostname} exited early:\n{self.log_tail()}")
            return " ready." in self.log_path.read_text(errors="replace")

        wait_until(ready, timeout, f"worker {self.hostname} to be ready", interval=0.1)
        return self

    def crashed(self) -> bool:
        """Gone, or going, without the bench killing it: exited, or Celery gave up on its consumer."""
        if self.killed or self.process is None:
            return False
        return not self.alive() or "Unrecoverable error" in self.log_path.read_text(errors="replace")

    def child_pids(self) -> set[int]:
        """The pool's processes (prefork children), read from /proc."""
        out = set()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == self.pid:
                    out.add(int(entry.name))
        return out

    def kill9(self) -> None:
        """SIGKILL the whole process group (main process and pool): a crash, not a shutdown."""
        self.killed = True
        if self.alive():
            os.killpg(self.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self, timeout: float = 15) -> None:
        self.killed = True
        if not self.alive():
            return
        os.killpg(self.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill9()


# --------------------------------------------------------------------------- the effect server


class EffectServer:
    """A local HTTP server whose POST performs an effect, honouring the Idempotency-Key.

    A request with a key seen before gets the stored response and performs nothing (a replay). A
    new key performs the effect of the request body's `effect` (a logical effect: run, node,
    shard) and counts it, then holds its response until that run is released (so a fault can hit
    the step mid-call), at most `hold_max_s`. A logical effect completed more than once means the
    engine presented a different key for the same step: a double effect.
    """

    def __init__(self, hold_max_s: float = 60) -> None:
        self.hold_max_s = hold_max_s
        self.lock = threading.Lock()
        self.completions: collections.Counter = collections.Counter()  # logical effect -> completions
        self.keys: dict[str, str] = {}  # idempotency key -> logical effect
        self.replays: collections.Counter = collections.Counter()  # run -> replayed requests
        self.gates: dict[str, threading.Event] = collections.defaultdict(threading.Event)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> "EffectServer":
        self.thread.start()
        return self

    def release(self, run: str) -> None:
        with self.lock:
            gate = self.gates[run]
        gate.set()

    def effects_of(self, run: str) -> dict[str, int]:
        """Logical effect -> completions, for one run."""
        with self.lock:
            return {effect: n for effect, n in self.completions.items() if effect.startswith(f"{run}:")}

    def stop(self) -> None:
        with self.lock:
            for gate in self.gates.values():
                gate.set()
        self.server.shutdown()
        self.server.server_close()

    def _handler(self):
        bench = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                key = self.headers.get("Idempotency-Key")
                effect = body.get("effect") if isinstance(body, dict) else None
                if not key or not isinstance(effect, str) or ":" not in effect:
                    return self._answer(400, {"error": "an Idempotency-Key header and a body "
                                                       '{"effect": "<run>:<node>:<shard>"} are required'})
                with bench.lock:
                    replay = key in bench.keys
                    if replay:
                        bench.replays[effect.split(":", 1)[0]] += 1
                    else:
                        bench.keys[key] = effect
                        bench.completions[effect] += 1
                    gate = bench.gates[effect.split(":", 1)[0]]
                if not replay:
                    gate.wait(bench.hold_max_s)
                self._answer(200, {"ok": True, "effect": effect, "replayed": replay})

            def _answer(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the caller died while we held the response
                    pass

        return Handler
