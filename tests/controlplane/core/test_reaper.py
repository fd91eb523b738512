"""The reaper stops the groups it was told of when its parent dies, and only then."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from tests.controlplane.core.test_run_embedded import processes_in_groups, wait_gone

STUBBORN = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"


def _group(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code], start_new_session=True)


def _reaper(grace_s: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "controlplane.core.reaper", str(grace_s)],
                            stdin=subprocess.PIPE, start_new_session=True)


def _stop(*processes: subprocess.Popen) -> None:
    for process in processes:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=10)


def test_a_bare_eof_terminates_then_kills_every_group_it_was_told_of():
    polite, stubborn = _group("import time; time.sleep(120)"), _group(STUBBORN)
    reaper = _reaper(1.0)
    try:
        time.sleep(0.5)  # both have set their handlers
        reaper.stdin.write(f"{polite.pid}\n{stubborn.pid}\n".encode())
        reaper.stdin.close()  # what the parent's death does
        started = time.monotonic()
        assert polite.wait(timeout=5) == -signal.SIGTERM
        assert stubborn.wait(timeout=10) == -signal.SIGKILL
        assert 0.9 <= time.monotonic() - started <= 8
        assert reaper.wait(timeout=10) == 0
    finally:
        _stop(polite, stubborn, reaper)


def test_done_leaves_the_groups_alone():
    bystander = _group("import time; time.sleep(120)")
    reaper = _reaper(0.1)
    try:
        reaper.stdin.write(f"{bystander.pid}\ndone\n".encode())
        reaper.stdin.close()
        assert reaper.wait(timeout=10) == 0
        assert wait_gone({bystander.pid}, 0.5) == [bystander.pid]
        assert processes_in_groups({bystander.pid}) == [bystander.pid]
    finally:
        _stop(bystander, reaper)
