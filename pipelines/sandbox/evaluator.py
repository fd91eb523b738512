"""The parent side of the sandbox: one evaluator process per calling process, spoken to over
pipes with a deadline.

jq runs in C: neither Celery's soft time limit nor any Python signal handler can interrupt a
program that loops or allocates without end. So programs run in a separate process that this
module starts lazily, waits for with a deadline, and kills (by its pid, SIGKILL) when the
deadline passes; the process also caps its own address space. The caller, a Celery pool child
say, is never the process that is killed. The next evaluation starts a fresh process.

A process that forks (Celery's prefork pool) gives each child its own evaluator: the handle
remembers the pid that started it and a forked copy starts its own instead of sharing pipes.
"""

from __future__ import annotations

import json
import math
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Sequence

from pipelines.sandbox.child import HEADER, MEMORY_REPLY

CHILD = Path(__file__).with_name("child.py")
MIB = 1 << 20
_READ_CHUNK = 1 << 16


# How a process over its memory ends: jq's allocator aborts, a runaway stack segfaults, the
# kernel's OOM killer SIGKILLs, Python's MemoryError exits with 3.
_OUT_OF_MEMORY = frozenset({-signal.SIGABRT, -signal.SIGSEGV, -signal.SIGBUS, -signal.SIGKILL, 3})


class Exhausted(Exception):
    """The evaluator went over a limit (``limit``: "time" or "memory") or died otherwise
    ("crash"); it was killed or reaped either way."""

    def __init__(self, limit: str):
        self.limit = limit
        super().__init__(limit)


class _Deadline(Exception):
    pass


class _Died(Exception):
    pass


class Evaluator:
    """A lazily started sandbox process. ``run`` is thread-safe (one request at a time)."""

    def __init__(self, python: str = sys.executable):
        self._python = python
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._owner = 0  # pid of the process that started self._proc
        self._cap_bytes = 0
        self._buffer = bytearray()
        self.spawned = 0  # processes this handle has started, and round trips (tests, benchmarks)
        self.requests = 0

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._owner == os.getpid() else None

    def run(self, exprs: Sequence[tuple[str, bool]], input_text: str, *, budget_s: float,
            memory_mib: int, stop_on_error: bool = False) -> list[list[Any]]:
        """Evaluate ``exprs`` (sandboxed program text, multiple) on one input within
        ``budget_s`` seconds: ``[["o", value] | ["e", message], ...]``. Raises ``Exhausted``."""
        header = json.dumps({"exprs": exprs, "stop_on_error": stop_on_error}).encode()
        body = input_text.encode()
        request = b"".join((HEADER.pack(len(header)), header, HEADER.pack(len(body)), body))
        with self._lock:
            deadline = time.monotonic() + max(0.0, budget_s)
            proc = self._ensure(memory_mib * MIB)
            self.requests += 1
            try:
                self._write(proc, request, deadline)
                reply = self._read_frame(proc, deadline)
            except _Deadline:
                self._kill()
                raise Exhausted("time") from None
            except _Died:
                raise Exhausted(self._death_cause()) from None
            except BaseException:  # a soft time limit, KeyboardInterrupt: state unknown
                self._kill()
                raise
        if reply == MEMORY_REPLY:
            with self._lock:
                self._kill()
            raise Exhausted("memory")
        return json.loads(reply)

    def close(self) -> None:
        with self._lock:
            self._kill()

    def _ensure(self, cap_bytes: int) -> subprocess.Popen:
        if self._proc is not None and self._owner != os.getpid():
            self._forget()  # inherited through fork: the parent's, not ours to use or kill
        if self._proc is not None and (self._cap_bytes != cap_bytes or self._proc.poll() is not None):
            self._kill()
        if self._proc is None:
            self._proc = subprocess.Popen(
                [self._python, "-I", str(CHILD), str(cap_bytes), str(os.getpid())],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                env={}, cwd="/", close_fds=True, start_new_session=True,
            )
            os.set_blocking(self._proc.stdin.fileno(), False)
            os.set_blocking(self._proc.stdout.fileno(), False)
            self._owner, self._cap_bytes = os.getpid(), cap_bytes
            self._buffer.clear()
            self.spawned += 1
        return self._proc

    def _write(self, proc: subprocess.Popen, data: bytes, deadline: float) -> None:
        fd = proc.stdin.fileno()
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(fd, view):]
            except BlockingIOError:
                _wait(fd, select.POLLOUT, deadline)
            except (BrokenPipeError, ConnectionResetError):
                raise _Died() from None

    def _read_frame(self, proc: subprocess.Popen, deadline: float) -> bytes:
        fd = proc.stdout.fileno()
        self._fill(fd, HEADER.size, deadline)
        (size,) = HEADER.unpack_from(self._buffer)
        self._fill(fd, HEADER.size + size, deadline)
        frame = bytes(self._buffer[HEADER.size:HEADER.size + size])
        del self._buffer[:HEADER.size + size]
        return frame

    def _fill(self, fd: int, size: int, deadline: float) -> None:
        while len(self._buffer) < size:
            try:
                chunk = os.read(fd, max(_READ_CHUNK, size - len(self._buffer)))
            except BlockingIOError:
                _wait(fd, select.POLLIN, deadline)
                continue
            if not chunk:
                raise _Died()
            self._buffer += chunk

    def _death_cause(self) -> str:
        """Why the process ended mid-request: "memory" when jq aborted on a failed allocation
        (or the stack overflowed, or the kernel's OOM killer struck), "crash" otherwise."""
        proc = self._proc
        try:
            returncode = proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:  # closed its pipes but lingers: not a clean death
            returncode = None
        self._kill()
        return "memory" if returncode in _OUT_OF_MEMORY else "crash"

    def _kill(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if self._owner == os.getpid():
            # Only while unreaped: once waited for, its pid may already belong to someone else.
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:  # stuck in the kernel: subprocess reaps it later
                    pass
            proc.stdin.close()
            proc.stdout.close()
        self._forget()

    def _forget(self) -> None:
        self._proc = None
        self._owner = 0
        self._buffer.clear()


def _wait(fd: int, events: int, deadline: float) -> None:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise _Deadline()
    poller = select.poll()
    poller.register(fd, events)
    if not poller.poll(math.ceil(remaining * 1000)):
        raise _Deadline()
