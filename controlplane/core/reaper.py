"""Stop process groups when the process that started them dies, however it died.

`run_embedded` starts one reaper (`python -m controlplane.core.reaper GRACE`) before anything
else, with a pipe it alone writes to as the reaper's stdin, then web, a worker and beat, each in
its own process group, writing each group's id to the pipe as a line. PR_SET_PDEATHSIG only
sends a group leader SIGTERM; a worker still booting, a gunicorn finishing a request or a pool
child that lost its parent can outlive that by far. The reaper reads its stdin to EOF: a last
line "done" means the parent stopped everything itself; a bare EOF means the parent died, so it
sends every group SIGTERM, waits GRACE seconds for them to go, then SIGKILLs what is left. It
imports nothing beyond the standard library.
"""
from __future__ import annotations

import os
import signal
import sys
import time

DONE = b"done"


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def signal_groups(pgids: list[int], signum: int) -> None:
    for pgid in pgids:
        try:
            os.killpg(pgid, signum)
        except (ProcessLookupError, PermissionError):
            pass


def reap(pgids: list[int], grace_s: float) -> None:
    signal_groups(pgids, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while any(group_alive(pgid) for pgid in pgids) and time.monotonic() < deadline:
        time.sleep(0.1)
    signal_groups(pgids, signal.SIGKILL)


def main(argv: list[str]) -> int:
    grace_s = float(argv[0])
    # A terminal's Ctrl-C or a stop signal to the parent's group is not for us: the parent
    # tells us with "done", or by dying.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    received = b""
    while chunk := os.read(sys.stdin.fileno(), 64):
        received += chunk
    lines = received.split()
    if lines[-1:] != [DONE]:
        reap([int(line) for line in lines if line.isdigit()], grace_s)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
