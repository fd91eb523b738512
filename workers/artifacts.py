"""The worker's in-process artifact cache: the rendered jobs the control plane told it to hold.

Apply and reconcile broadcast `flowplane_load_artifacts` / `flowplane_unload_artifacts` (see
`workers/bootsteps.py`); remote-control commands run in the worker's main process, and so does
the heartbeat that reports `loaded()` digests, so the cache lives there. Prefork pool children do
not see updates made after they were forked: tasks read their spec from PostgreSQL, this cache is
what the worker *claims* to hold, for drift detection.

An artifact is `{"job_id": str, "digest": str, "spec": dict}`; a missing digest is computed as
the sha256 of the spec's canonical JSON (`pipelines.planner.spec_digest`, the planner's own).
"""
from __future__ import annotations

import os
import threading
from typing import Any, Iterable

from pipelines.planner import spec_digest

_lock = threading.Lock()
_cache: dict[str, dict[str, Any]] = {}


def _reset_lock_in_child() -> None:
    """A pool child forked while another thread held the lock must not inherit it locked."""
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_lock_in_child)


class ArtifactError(ValueError):
    """An artifact message the cache cannot accept (names the culprit)."""


def _validated(artifact: Any, index: int) -> tuple[str, dict[str, Any]]:
    if not isinstance(artifact, dict):
        raise ArtifactError(f"artifacts[{index}] is {type(artifact).__name__}; send an object with job_id and spec")
    job_id = artifact.get("job_id")
    if not isinstance(job_id, str) or not job_id:
        raise ArtifactError(f"artifacts[{index}].job_id is missing; every artifact needs its stable job id")
    spec = artifact.get("spec")
    digest = artifact.get("digest") or spec_digest(spec)
    return job_id, {"digest": str(digest), "spec": spec}


def load_artifacts(artifacts: Iterable[dict], *, replace: bool = False) -> dict[str, str]:
    """Cache the artifacts (all or none); with `replace`, drop every other one. Returns {job_id: digest} loaded."""
    entries = dict(_validated(artifact, index) for index, artifact in enumerate(artifacts or []))
    with _lock:
        if replace:
            _cache.clear()
        _cache.update(entries)
    return {job_id: entry["digest"] for job_id, entry in entries.items()}


def unload_artifacts(job_ids: Iterable[str] | None) -> list[str]:
    """Drop the given job ids (None: all of them); returns the ids that were actually held."""
    with _lock:
        ids = list(_cache) if job_ids is None else [str(j) for j in job_ids]
        return [job_id for job_id in ids if _cache.pop(job_id, None) is not None]


def loaded() -> dict[str, str]:
    """What the worker holds: {job_id: digest}."""
    with _lock:
        return {job_id: entry["digest"] for job_id, entry in _cache.items()}


def get(job_id: str) -> dict[str, Any] | None:
    """One cached artifact `{"digest", "spec"}`, or None."""
    with _lock:
        entry = _cache.get(job_id)
        return dict(entry) if entry else None


def clear() -> None:
    with _lock:
        _cache.clear()
