"""What a step runs: the artifact its run was pinned to, from this process's cache or the store.

    artifact_spec(company_id=, digest=, ...)  the spec to run: this process's cache, else the store

(Apply writes the store: `controlplane.deployments.services.artifacts.artifacts_store`.)

A run's graph names each job's artifact digest (`job["artifact"]`, set where the graph is built:
`selectors.deployment_execution_graph`). The step runs that artifact's spec and nothing else: a
cache hit costs no query (entries were checked on the way in); a miss reads the row, hashes it
with the one artifact digest (`pipelines.planner.spec_digest`) and refuses it when it does not
match, or when there is no such row, with a non-retryable `ArtifactRefused`. After an on-demand
load `artifact_loaded` is sent, so the worker's main process can hold it and report it.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Mapping

from controlplane.deployments.artifact_cache import artifact_loaded, cache
from controlplane.deployments.models import Artifact
from pipelines.planner import spec_digest

logger = logging.getLogger(__name__)

ARTIFACT_NOT_FOUND = "artifact_not_found"
ARTIFACT_MISMATCH = "artifact_mismatch"

__all__ = ["ARTIFACT_MISMATCH", "ARTIFACT_NOT_FOUND", "ArtifactRefused", "artifact_loaded", "artifact_spec",
           "runnable_job"]


class ArtifactRefused(Exception):
    """A step's pinned artifact cannot be run: missing from the store, or its spec does not hash to
    its digest. Never retried: the stored row will not heal by itself."""

    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code, self.details = code, details

    def to_error(self) -> dict[str, Any]:
        """The step error dict the engine records (same shape as `attempts.error_dict`)."""
        return {"message": str(self), "retryable": False, "code": self.code, "details": dict(self.details)}


def artifact_spec(*, company_id: int, digest: str, job_id: str, key: Callable[[], str | None] = lambda: None,
                  worker: str = "") -> dict[str, Any]:
    """The verified spec of artifact `digest`, which job `job_id` of a run was pinned to.

    `key` names the artifact key to report after an on-demand load (called only on a miss).
    Raises `ArtifactRefused` (`artifact_not_found`, `artifact_mismatch`). Do not mutate the result.
    """
    spec = cache.spec(digest)
    if spec is not None:
        return spec
    stored = Artifact.objects.filter(company_id=company_id, digest=digest).values_list("spec", flat=True).first()
    if stored is None:
        raise ArtifactRefused(
            ARTIFACT_NOT_FOUND,
            f"job {job_id!r} is pinned to artifact {digest}, which is not in the store; "
            "apply the deployment again and start a new run",
            job_id=job_id, expected=digest,
        )
    actual = spec_digest(stored)
    if actual != digest:
        logger.error("artifact.mismatch", extra={"job_id": job_id, "expected": digest, "actual": actual})
        raise ArtifactRefused(
            ARTIFACT_MISMATCH,
            f"job {job_id!r} is pinned to artifact {digest} but the stored spec hashes to {actual}; "
            "the row was changed after apply: refusing to run it",
            job_id=job_id, expected=digest, actual=actual,
        )
    cache.remember(digest, stored)
    logger.info("artifact.loaded_on_demand", extra={"job_id": job_id, "digest": digest})
    artifact_key = key()
    if artifact_key:
        artifact_loaded.send(sender=None, key=artifact_key, digest=digest, spec=stored, worker=worker)
    return stored


def runnable_job(job: Mapping[str, Any], spec: Mapping[str, Any]) -> dict[str, Any]:
    """The pinned graph's `job` with what runs taken from its artifact `spec`: type, config and
    timeout (the same fields `deployment_execution_graph` takes from it)."""
    return {**job, "type": spec.get("type") or job.get("type"), "config": spec.get("config") or {},
            "timeout_s": spec.get("timeout_s")}
