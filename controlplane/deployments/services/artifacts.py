"""Writes of the artifact store: every rendered job spec of an apply, once per (company, digest)."""
from __future__ import annotations

from typing import Any, Iterable, Mapping

from controlplane.deployments.artifact_cache import cache
from controlplane.deployments.models import Artifact
from pipelines.planner import spec_digest


def artifacts_store(*, company_id: int, jobs: Iterable[Mapping[str, Any]]) -> int:
    """Store every rendered `{spec, digest}` of an apply (the same spec is the same row). Refuses a
    job whose spec does not hash to its digest: the store only ever holds what it says. Returns how
    many jobs were offered."""
    rows: dict[str, Artifact] = {}
    for job in jobs:
        digest, spec = job["digest"], job["spec"]
        actual = spec_digest(spec)
        if actual != digest:
            raise ValueError(f"job {job.get('job_id')!r}: spec hashes to {actual}, not {digest}; plan again")
        rows.setdefault(digest, Artifact(company_id=company_id, digest=digest, spec=spec))
    if rows:
        Artifact.objects.bulk_create(list(rows.values()), ignore_conflicts=True)
    # Write-through: this process checked these specs against their digests, so it can run them
    # (safe even if the transaction rolls back: a spec that hashes to a digest *is* that artifact).
    for digest, row in rows.items():
        cache.remember(digest, row.spec)
    return len(rows)
