"""Tiny literal graphs and histories for the decider's tests (no database)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from pipelines.engine import AttemptRecord, ExecutionGraph, Snapshot

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
RUN_ID = "run-1"


def job(node_id: str, type: str = "noop", **fields) -> dict:
    return {"id": node_id, "type": type, "group": "ingest", "replicas": 1, "config": {},
            "retry": {"max_attempts": 1}, "timeout_s": None, "compensate": None, **fields}


def graph(jobs: list[dict], edges: list[tuple] = ()) -> ExecutionGraph:
    return ExecutionGraph.from_dict({"jobs": jobs, "edges": [
        {"from": src, "to": dst, "branch": rest[0] if rest else None} for src, dst, *rest in edges]})


_ids = iter(range(1, 10**9))


def attempt(node_id: str, status: str, *, shard: int = 0, attempt: int = 1, output=None, seconds_ago: float = 1,
            task_id: str | None = "t-1", retries: int = 0, pid: int | None = 10, counts: bool = True,
            compensation: bool = False) -> AttemptRecord:
    return AttemptRecord(next(_ids), node_id, shard, attempt, status, "ingest1@test",
                         NOW - timedelta(seconds=seconds_ago), output, compensation, task_id, retries, pid, counts)


def snapshot(*records: AttemptRecord, status: str = "running") -> Snapshot:
    return Snapshot.of(RUN_ID, status, records)
