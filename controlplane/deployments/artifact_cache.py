"""The process's artifact cache: the specs this process can run, by digest, and the ones it holds.

Two things, one lock:

    specs   {digest: spec}, least recently used first, bounded by `ARTIFACT_CACHE_SIZE`: what
            steps run. Every entry was checked on the way in (its spec hashes to its digest), so
            a hit is used as it is, with no query and no hashing
    held    {artifact key: {digest, spec}}: what the control plane told this worker to hold
            (broadcasts, `workers/artifacts.py`) plus what it loaded on demand, as it was sent;
            the heartbeat reports the digests and reconcile compares them with the deployments
            (drift). A held spec that does not hash to its digest is reported but never run.
            A held digest's spec is never evicted, so the bound only ever drops specs no job key
            names (an old digest a finished run was pinned to, a job unloaded since).

It lives in `controlplane` because the step runtime (`controlplane.deployments.artifacts`) reads
it; the worker's remote-control commands feed it. Each process has its own: a prefork pool child
starts with its parent's cache as of the fork and loads what it lacks from the store.
"""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from typing import Any, Iterable, Mapping

from django.dispatch import Signal

from pipelines.planner import spec_digest

artifact_loaded = Signal()
"""Sent (sender=None) after a step loaded its spec from the store on demand, with `key` (the
artifact key, `<deployment id>:<job id>`), `digest`, `spec` and `worker` (the hostname that ran
it). Defined here, with no model import, so the worker's bootsteps can connect it at import."""

ARTIFACT_CACHE_SIZE = 512
"""Specs kept per process besides the held ones (most are a few hundred bytes)."""


class ArtifactError(ValueError):
    """An artifact the cache cannot accept (names the culprit)."""


def checked(artifact: Any, index: int = 0) -> tuple[str, str, Any]:
    """(key, digest, spec) of one `{job_id: <artifact key>, digest, spec}`, the digest computed
    when none is given; raises ArtifactError when it is malformed."""
    if not isinstance(artifact, Mapping):
        raise ArtifactError(f"artifacts[{index}] is {type(artifact).__name__}; send an object with job_id and spec")
    key = artifact.get("job_id")
    if not isinstance(key, str) or not key:
        raise ArtifactError(f"artifacts[{index}].job_id is missing; every artifact needs its stable job id")
    spec = artifact.get("spec")
    return key, str(artifact.get("digest") or spec_digest(spec)), spec


def verified(digest: str, spec: Any) -> bool:
    """Whether `spec` is the artifact `digest` names (the one artifact digest: `spec_digest`)."""
    return isinstance(spec, dict) and spec_digest(spec) == digest


class ArtifactCache:
    def __init__(self, size: int = ARTIFACT_CACHE_SIZE) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._specs: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._held: dict[str, dict[str, Any]] = {}

    def reset_lock(self) -> None:
        """A pool child forked while another thread held the lock must not inherit it locked."""
        self._lock = threading.Lock()

    # -- what runs -------------------------------------------------------------------------
    def spec(self, digest: str) -> dict[str, Any] | None:
        """The verified spec of `digest`, or None. Callers must not mutate it."""
        with self._lock:
            spec = self._specs.get(digest)
            if spec is not None:
                self._specs.move_to_end(digest)
            return spec

    def remember(self, digest: str, spec: dict[str, Any]) -> None:
        """Keep a spec already checked against `digest` (loaded from the store on demand)."""
        with self._lock:
            self._put(digest, spec)
            self._evict()

    # -- what is held (reported) -----------------------------------------------------------
    def load(self, artifacts: Iterable[Mapping], *, replace: bool = False) -> dict[str, str]:
        """Hold the artifacts (all or none: one malformed entry refuses the message); with
        `replace`, drop every other held key. Returns {key: digest} loaded."""
        entries = [checked(artifact, index) for index, artifact in enumerate(artifacts or [])]
        runnable = [(digest, spec) for _, digest, spec in entries if verified(digest, spec)]
        with self._lock:
            if replace:
                self._held.clear()
            for key, digest, spec in entries:
                self._held[key] = {"digest": digest, "spec": spec}
            for digest, spec in runnable:
                self._put(digest, spec)
            self._evict()
        return {key: digest for key, digest, _ in entries}

    def hold_if_missing(self, key: str, digest: str, spec: dict[str, Any]) -> bool:
        """Hold `key` at `digest` unless it already holds one (a run pinned to an older digest must
        not make the worker report the deployment's current artifact as stale). True if held now.
        Only a spec that hashes to `digest` is accepted (ArtifactError otherwise)."""
        key, digest, spec = checked({"job_id": key, "digest": digest, "spec": spec})
        if not verified(digest, spec):
            raise ArtifactError(f"artifact {key!r}: the spec does not hash to {digest}; not held")
        with self._lock:
            self._put(digest, spec)
            added = key not in self._held
            if added:
                self._held[key] = {"digest": digest, "spec": spec}
            self._evict()
        return added

    def unload(self, keys: Iterable[str] | None) -> list[str]:
        """Drop the given held keys (None: all); returns those that were held. Their specs stay
        cached until evicted: a run in flight may still be pinned to them."""
        with self._lock:
            ids = list(self._held) if keys is None else [str(k) for k in keys]
            return [key for key in ids if self._held.pop(key, None) is not None]

    def loaded(self) -> dict[str, str]:
        """What this process holds: {artifact key: digest}."""
        with self._lock:
            return {key: entry["digest"] for key, entry in self._held.items()}

    def get(self, key: str) -> dict[str, Any] | None:
        """One held artifact `{"digest", "spec"}`, or None."""
        with self._lock:
            entry = self._held.get(key)
            return dict(entry) if entry else None

    def clear(self) -> None:
        with self._lock:
            self._specs.clear()
            self._held.clear()

    def __len__(self) -> int:
        """How many runnable specs are cached."""
        with self._lock:
            return len(self._specs)

    # -- under the lock --------------------------------------------------------------------
    def _put(self, digest: str, spec: dict[str, Any]) -> None:
        self._specs[digest] = spec
        self._specs.move_to_end(digest)

    def _evict(self) -> None:
        if len(self._specs) <= self.size:
            return
        pinned = {entry["digest"] for entry in self._held.values()}
        for digest in [d for d in self._specs if d not in pinned]:
            if len(self._specs) <= self.size:
                break
            del self._specs[digest]


cache = ArtifactCache()
"""This process's cache (the worker's main process and each pool child have their own)."""

if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=cache.reset_lock)
