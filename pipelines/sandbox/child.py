"""The sandbox evaluator process: runs jq programs for one parent, within a memory cap.

Started by ``pipelines.sandbox.evaluator`` as ``python -I child.py <cap_bytes> <parent_pid>``
with an empty environment, so nothing here may import ``pipelines`` (the standard library and
``jq`` only). It caps its own address space (RLIMIT_AS) once its imports are loaded, dies with
its parent (PR_SET_PDEATHSIG), and then serves requests until its stdin closes.

Protocol (both directions): frames of a 4-byte big-endian length and that many bytes.
A request is two frames: a JSON header ``{"exprs": [[program, multiple], ...], "stop_on_error":
bool}`` and the input as JSON text. The reply is one frame: a JSON list with one entry per
program, ``["o", value]`` or ``["e", message]`` (shorter when ``stop_on_error`` stopped at an
error), or the JSON string ``"memory"`` when Python itself ran out of memory (the process then
exits). When jq runs out of memory it aborts the process; the parent reads that as the cap.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import struct
import sys
from collections import OrderedDict

import jq

HEADER = struct.Struct("!I")
CACHE_SIZE = 256
MEMORY_REPLY = b'"memory"'


def read_frame(fd: int) -> bytes | None:
    """One frame from a blocking fd, or None at end of input."""
    head = _read_exact(fd, HEADER.size)
    if head is None:
        return None
    (size,) = HEADER.unpack(head)
    body = _read_exact(fd, size)
    if body is None:
        raise EOFError("input ended inside a frame")
    return body


def _read_exact(fd: int, size: int) -> bytes | None:
    chunks, missing = [], size
    while missing:
        chunk = os.read(fd, min(missing, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        missing -= len(chunk)
    return b"".join(chunks)


def write_frame(fd: int, body: bytes) -> None:
    data = memoryview(HEADER.pack(len(body)) + body)
    while data:
        data = data[os.write(fd, data):]


def evaluate(header: dict, text: str, cache: OrderedDict) -> bytes:
    items = []
    for program, multiple in header["exprs"]:
        try:
            compiled = cache.get(program)
            if compiled is None:
                compiled = cache[program] = jq.compile(program)
                if len(cache) > CACHE_SIZE:
                    cache.popitem(last=False)
            else:
                cache.move_to_end(program)
            results = compiled.input_text(text)
            value = list(results) if multiple else next(iter(results), None)
            items.append('["o",' + json.dumps(value, ensure_ascii=False) + "]")
        except MemoryError:
            raise
        except Exception as exc:  # a jq error, or output too deep to serialise
            items.append(json.dumps(["e", str(exc) or type(exc).__name__], ensure_ascii=False))
            if header.get("stop_on_error"):
                break
    return ("[" + ",".join(items) + "]").encode()


def _die_with_parent(parent: int) -> None:
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the parent's pipe closing still ends the loop below
    if os.getppid() != parent:  # the parent died before prctl took effect
        sys.exit(0)


def _cap(cap_bytes: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (cap_bytes, cap_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # jq aborts on ENOMEM: no core files
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))  # it never writes files


def main(argv: list[str]) -> int:
    cap_bytes, parent = int(argv[1]), int(argv[2])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when this process ends
    os.environ.clear()  # started with none, but Python's locale coercion adds LC_CTYPE
    _die_with_parent(parent)
    _cap(cap_bytes)
    try:
        return serve()
    except MemoryError:  # a request (reading it, or its results) larger than the cap
        try:
            write_frame(1, MEMORY_REPLY)
        except OSError:
            pass
        return 3


def serve() -> int:
    cache: OrderedDict = OrderedDict()
    while True:
        header = read_frame(0)
        if header is None:
            return 0
        text = read_frame(0)
        write_frame(1, evaluate(json.loads(header), text.decode(), cache))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
