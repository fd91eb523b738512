"""The worker's view of its artifact cache (`controlplane.deployments.artifact_cache`).

Apply and reconcile broadcast `flowplane_load_artifacts` / `flowplane_unload_artifacts` (see
`workers/bootsteps.py`); remote-control commands run in the worker's main process, and so does
the heartbeat that reports `loaded()` digests. Steps read the same per-process cache by digest
(`controlplane.deployments.artifacts.artifact_spec`): a pool child forked after a load runs from
it with no query; one forked before (or a worker that missed the broadcast) loads the spec from the
store on demand and tells the main process (`flowplane_artifact_loaded`), which then holds and
reports it.

An artifact is `{"job_id": <artifact key>, "digest": str, "spec": dict}`; a missing digest is the
spec's `pipelines.planner.spec_digest` (the one artifact digest). Only a spec that hashes to its
digest is ever run from the cache.
"""
from __future__ import annotations

from typing import Any, Iterable

from controlplane.deployments.artifact_cache import ArtifactError, cache
from pipelines.planner import spec_digest

__all__ = ["ArtifactError", "clear", "get", "hold_if_missing", "load_artifacts", "loaded", "spec_digest",
           "unload_artifacts"]


def load_artifacts(artifacts: Iterable[dict], *, replace: bool = False) -> dict[str, str]:
    """Hold the artifacts (all or none); with `replace`, drop every other one. Returns {key: digest} loaded."""
    return cache.load(artifacts, replace=replace)


def hold_if_missing(artifact: dict[str, Any]) -> bool:
    """Hold an artifact a pool child loaded on demand, unless its key already holds a digest."""
    return cache.hold_if_missing(artifact.get("job_id"), artifact.get("digest"), artifact.get("spec"))


def unload_artifacts(job_ids: Iterable[str] | None) -> list[str]:
    """Drop the given keys (None: all of them); returns the keys that were actually held."""
    return cache.unload(job_ids)


def loaded() -> dict[str, str]:
    """What the worker holds: {artifact key: digest}."""
    return cache.loaded()


def get(job_id: str) -> dict[str, Any] | None:
    """One held artifact `{"digest", "spec"}`, or None."""
    return cache.get(job_id)


def clear() -> None:
    cache.clear()
