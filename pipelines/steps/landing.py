"""Landing steps: move data between worker groups through a landing store.

The planner turns a ``landing`` edge ``P -> C`` into ``P -> W -> R -> C`` where ``W`` is a
``landing_write`` job on P's group and ``R`` a ``landing_read`` job on C's group, both configured
with ``{store, key, edge}`` (``key`` is rendered per execution: ``"<execution id>/P->C"``).

* ``landing_write`` stores ``config.data`` if given, else the output of the edge's producer
  (``.steps[P].output`` of the context), as JSON under ``key``; returns ``{key, bytes}``.
* ``landing_read`` returns the JSON stored under ``key`` as its output.

Stores are picked by URL scheme from a small registry: ``file://<dir>`` (the default, one file per
key) and ``memory://<name>`` (process-local, for tests) are built in; an object store plugs in with
``register_landing_store("s3", factory)`` where ``factory(url)`` returns a ``LandingStore``.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Protocol
from urllib.parse import unquote, urlsplit

from pipelines.errors import PipelineError, StepFailed
from pipelines.masking import MaskDepthError, active_mask
from pipelines.steps.base import Field, StepContext, StepType
from pipelines.steps.registry import register_step_type

_KEY_SEGMENT = re.compile(r"^[A-Za-z0-9_.>\-]+$")


class LandingStore(Protocol):
    """Where landed data lives. Keys are validated ``a/b/c`` paths; values are bytes."""

    def put(self, key: str, data: bytes) -> None: ...

    def get(self, key: str) -> bytes: ...  # raises KeyError when nothing is stored under key

    def delete(self, key: str) -> None: ...


def check_key(key: Any) -> str:
    """A key is ``/``-separated segments of ``[A-Za-z0-9_.>-]``, none empty, ``.`` or ``..``."""
    if not isinstance(key, str) or not key:
        raise PipelineError(f"landing key must be a non-empty string, got {key!r}")
    for segment in key.split("/"):
        if segment in ("", ".", "..") or not _KEY_SEGMENT.match(segment):
            raise PipelineError(f"landing key {key!r} has an invalid segment {segment!r}; use letters, digits, "
                                "'_', '.', '-', '>' between single slashes")
    return key


class FileStore:
    """One JSON file per key under a directory; writes are atomic (temp file + rename)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/")).with_name(key.rsplit("/", 1)[-1] + ".json")

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".landing-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise KeyError(key) from None

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


class MemoryStore:
    """Process-local store (``memory://<name>``): each name is one shared dict."""

    _spaces: dict[str, dict[str, bytes]] = {}
    _lock = threading.Lock()

    def __init__(self, name: str) -> None:
        with self._lock:
            self.data = self._spaces.setdefault(name, {})

    def put(self, key: str, data: bytes) -> None:
        self.data[check_key(key)] = bytes(data)

    def get(self, key: str) -> bytes:
        return self.data[check_key(key)]

    def delete(self, key: str) -> None:
        self.data.pop(check_key(key), None)


def _file_store(url: str) -> LandingStore:
    parts = urlsplit(url)
    path = unquote(parts.netloc + parts.path)
    if not path:
        raise PipelineError(f"landing store {url!r} names no directory; use file:///absolute/dir")
    return FileStore(path)


def _memory_store(url: str) -> LandingStore:
    return MemoryStore(urlsplit(url).netloc or "default")


_SCHEMES: dict[str, Callable[[str], LandingStore]] = {"file": _file_store, "memory": _memory_store}


def register_landing_store(scheme: str, factory: Callable[[str], LandingStore]) -> None:
    """Plug in a store for ``<scheme>://...`` URLs (an object store, say); replaces an earlier one."""
    _SCHEMES[scheme.lower()] = factory


def landing_store(url: str) -> LandingStore:
    """The store for a URL; ``PipelineError`` naming the known schemes otherwise."""
    scheme = urlsplit(url).scheme.lower() if isinstance(url, str) else ""
    factory = _SCHEMES.get(scheme)
    if factory is None:
        known = ", ".join(f"{s}://" for s in sorted(_SCHEMES))
        raise PipelineError(f"landing store {url!r} has no registered scheme; known: {known}")
    return factory(url)


def _store_or_fail(url: str) -> LandingStore:
    try:
        return landing_store(url)
    except PipelineError as exc:
        raise StepFailed(str(exc), retryable=False, details={"store": url}) from None


def _producer(edge: Any) -> str | None:
    if isinstance(edge, str) and "->" in edge:
        return edge.split("->", 1)[0]
    return None


_CONFIG = {
    "store": Field("string", required=True, description="landing store URL: file:///dir, memory://name, ..."),
    "key": Field("string", required=True, description="where the data lands; per execution"),
    "edge": Field("string", description="the landing edge 'P->C' this adapter serves"),
}


@register_step_type
class LandingWriteStep(StepType):
    name = "landing_write"
    description = "Write the producer's output (or config.data) as JSON to the landing store under key."
    config_schema = {**_CONFIG, "data": Field("any", description="what to write; default: the producer's output")}

    def run(self, config: dict, ctx: StepContext) -> Any:
        if "data" in config and config["data"] is not None:
            data = config["data"]
        else:
            producer = _producer(config.get("edge"))
            steps = (ctx.context or {}).get("steps") or {}
            if producer is None or producer not in steps:
                raise StepFailed(f"landing_write has no data: config.data is absent and producer {producer!r} has "
                                 "no output in the context", retryable=False, details={"edge": config.get("edge")})
            data = (steps[producer] or {}).get("output")
        # The landing store is a record too, and what lands becomes the reader's output, which
        # knows nothing of this step's secrets: whatever of them this step was given lands masked.
        try:
            data = active_mask().apply(data)
        except MaskDepthError as exc:
            raise StepFailed(f"landing_write data: {exc}", retryable=False) from None
        try:
            payload = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise StepFailed(f"landing_write data is not JSON: {exc}", retryable=False) from None
        store = _store_or_fail(config["store"])
        try:
            store.put(check_key(config["key"]), payload)
        except PipelineError as exc:
            raise StepFailed(str(exc), retryable=False, details={"key": config["key"]}) from None
        except OSError as exc:
            raise StepFailed(f"landing store write failed: {exc}", retryable=True, details={"key": config["key"]}) \
                from None
        return {"key": config["key"], "bytes": len(payload)}


@register_step_type
class LandingReadStep(StepType):
    name = "landing_read"
    reads_context = False
    description = "Read the JSON stored under key in the landing store and output it."
    config_schema = dict(_CONFIG)

    def run(self, config: dict, ctx: StepContext) -> Any:
        store = _store_or_fail(config["store"])
        try:
            payload = store.get(check_key(config["key"]))
        except PipelineError as exc:
            raise StepFailed(str(exc), retryable=False, details={"key": config["key"]}) from None
        except KeyError:
            # The writer may not have landed yet (or its store is eventually consistent): try again.
            raise StepFailed(f"nothing landed under {config['key']!r} yet", retryable=True,
                             details={"key": config["key"]}) from None
        except OSError as exc:
            raise StepFailed(f"landing store read failed: {exc}", retryable=True, details={"key": config["key"]}) \
                from None
        try:
            return json.loads(payload.decode("utf-8"))
        except ValueError as exc:
            raise StepFailed(f"data under {config['key']!r} is not JSON: {exc}", retryable=False) from None
