"""A run's pinned execution graph as typed, frozen values.

The stored format stays the dict a run pins when it starts (`execution.graph`:
`{"params": ..., "jobs": [{id, type, config, group, replicas, retry, timeout_s, compensate}],
"edges": [{from, to, branch}]}`); `ExecutionGraph.from_dict` reads it once per process and run,
so the engine's rules index typed fields instead of looking keys up in dicts on every step.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

from pipelines.graph import RetryPolicy


@dataclass(frozen=True, slots=True)
class Edge:
    """A dependency `source -> target`; `branch` ("true"/"false") when the source is a condition."""

    source: str
    target: str
    branch: str | None = None


@dataclass(frozen=True, slots=True)
class Job:
    """One node of the run as deployed. `spec` is the stored dict, what a step runs from."""

    id: str
    type: str
    group: str
    replicas: int = 1
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout_s: float | None = None
    compensate: Mapping[str, Any] | None = None
    spec: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Job:
        return cls(id=raw["id"], type=raw.get("type", ""), group=raw.get("group", ""),
                   replicas=int(raw.get("replicas") or 1), retry=RetryPolicy(**(raw.get("retry") or {})),
                   timeout_s=raw.get("timeout_s"), compensate=raw.get("compensate"), spec=raw)


@dataclass(frozen=True, slots=True)
class ExecutionGraph:
    """Jobs in run order, edges, params, and the lookups claims need (jobs by id, incoming edges)."""

    jobs: tuple[Job, ...]
    edges: tuple[Edge, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    by_id: Mapping[str, Job] = field(default_factory=dict, compare=False, repr=False)
    incoming: Mapping[str, tuple[Edge, ...]] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ExecutionGraph:
        jobs = tuple(Job.from_dict(job) for job in raw.get("jobs", []))
        edges = tuple(Edge(edge["from"], edge["to"], edge.get("branch")) for edge in raw.get("edges", []))
        incoming: dict[str, list[Edge]] = {}
        for edge in edges:
            incoming.setdefault(edge.target, []).append(edge)
        return cls(jobs=jobs, edges=edges, params=raw.get("params") or {},
                   by_id=MappingProxyType({job.id: job for job in jobs}),
                   incoming=MappingProxyType({node: tuple(found) for node, found in incoming.items()}))

    def job(self, node_id: str) -> Job:
        try:
            return self.by_id[node_id]
        except KeyError:
            raise KeyError(f"the run has no job {node_id!r}; its graph has {sorted(self.by_id)}") from None

    def predecessors(self, node_id: str) -> set[str]:
        return {edge.source for edge in self.incoming.get(node_id, ())}
