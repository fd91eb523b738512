"""bin/run's lifecycle: it stops every child on SIGTERM and SIGINT within 10 s, refuses a taken
port, reuses the demo on a second run, prints the token on one line, and its children die with it.

Each test runs bin/run as a subprocess in a fresh var/ folder on a free port (SQLite and the
embedded file broker: no PostgreSQL or Redis of the test run is touched).
"""
from __future__ import annotations

import os
import re
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
START_TIMEOUT_S = 180
STOP_LIMIT_S = 10
TOKEN_LINE = re.compile(r"^API token for user 'demo' \(password 'demo-password'\): ([0-9a-f]{40})$")
STARTED_LINE = re.compile(r"^started (.*)$")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _env(var_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "SECRET_KEY", "DEBUG"}}
    env["FLOWPLANE_VAR_DIR"] = str(var_dir)
    return env


class Run:
    """bin/run in the background; its stdout lines collected by a reader thread."""

    def __init__(self, var_dir: Path, port: int, *args: str) -> None:
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [str(REPO_ROOT / "bin" / "run"), "--port", str(port), *args], cwd=REPO_ROOT, env=_env(var_dir),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for_line(self, pattern: re.Pattern, timeout: float = START_TIMEOUT_S) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if match := pattern.search(line):
                    return match
            if self.process.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.2)
        raise AssertionError(f"no line matching {pattern.pattern!r}; output:\n" + "\n".join(self.lines[-40:]))

    def child_pids(self) -> list[int]:
        started = self.wait_for_line(STARTED_LINE).group(1)
        return [int(pid) for pid in re.findall(r"\(pid (\d+)\)", started)]

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


def processes_in_groups(groups: set[int]) -> list[int]:
    """Every live process whose process group is one of `groups` (a worker's pool included)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[2]) in groups:
            found.append(int(entry.name))
    return found


def wait_gone(groups: set[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := processes_in_groups(groups)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def counts(var_dir: Path) -> dict[str, int]:
    with sqlite3.connect(var_dir / "controlplane.sqlite3") as db:
        return {
            table: db.execute(f"select count(*) from {table}").fetchone()[0]
            for table in ("tenancy_company", "tenancy_project", "workflows_workflow", "deployments_deployment",
                          "executions_execution")
        }


@pytest.fixture
def var_dir(tmp_path):
    return tmp_path / "var"


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_a_signal_stops_every_child_within_ten_seconds(var_dir, stop_signal):
    run = Run(var_dir, free_port())
    try:
        run.wait_for_line(re.compile("^serving; press Ctrl-C to stop$"))
        groups = set(run.child_pids())
        assert len(groups) == 3 and processes_in_groups(groups)
        token = run.wait_for_line(TOKEN_LINE).group(1)
        assert token
        started = time.monotonic()
        run.process.send_signal(stop_signal)
        run.process.wait(timeout=STOP_LIMIT_S + 5)
        elapsed = time.monotonic() - started
        print(f"bin/run stopped on {stop_signal.name} in {elapsed:.1f} s, exit code {run.process.returncode}")
        assert elapsed <= STOP_LIMIT_S
        assert run.process.returncode == 0
        assert wait_gone(groups, 0.5) == []
    finally:
        run.kill()


def test_a_second_run_reuses_the_demo_objects(var_dir):
    for round_ in (1, 2):
        run = Run(var_dir, free_port(), "--exit-after-demo")
        try:
            assert run.process.wait(timeout=START_TIMEOUT_S) == 0, "\n".join(run.lines[-40:])
            run.wait_for_line(TOKEN_LINE, timeout=1)
        finally:
            run.kill()
    assert counts(var_dir) == {  # the demo and the two seeds (harvest, booking), each run once a round
        "tenancy_company": 1, "tenancy_project": 1, "workflows_workflow": 3, "deployments_deployment": 3,
        "executions_execution": 6,
    }


def test_a_taken_port_is_refused_with_its_number(var_dir):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        run = Run(var_dir, port)
        try:
            assert run.process.wait(timeout=60) != 0
        finally:
            run.kill()
    run._reader.join(timeout=5)
    assert any(f"port {port}" in line and "already in use" in line for line in run.lines), run.lines


def test_children_die_with_a_killed_run_and_a_second_run_on_the_same_folder_is_refused(var_dir):
    port = free_port()
    run = Run(var_dir, port)
    try:
        groups = set(run.child_pids())
        # While it runs, a second run on the same var/ folder (another port) refuses to start.
        second = Run(var_dir, free_port())
        try:
            assert second.process.wait(timeout=60) != 0
        finally:
            second.kill()
        second._reader.join(timeout=5)
        assert any("is using" in line and str(var_dir) in line for line in second.lines), second.lines
        run.process.kill()  # SIGKILL: no chance to stop anything itself
        run.process.wait(timeout=10)
        assert wait_gone(groups, STOP_LIMIT_S + 5) == []
    finally:
        run.kill()
