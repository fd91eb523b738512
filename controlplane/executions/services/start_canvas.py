"""What every run of a deployment starts from, built once per deployment revision (issue 10).

A run is pinned to the execution graph of its deployment's artifacts and to the canvas compiled
from it. Both only change when the artifacts do, yet building them (read and decode every
artifact, order the jobs, compile the canvas) was a query and most of a start's own CPU. So each
process keeps them per *artifact stamp*: the deployment's revision (bumped by apply, rollback,
pause, resume, undeploy and accepted drift) together with a version of its artifact rows that
moves on any write to them, also one without a revision bump (a hand edit in the admin, reconcile
restoring a spec, a queryset update): see `start_reads._ARTIFACT_VERSION`. The stamp is read in
the start's one statement (`start_reads.deployment_for_start`), so a cached start reads no
artifact at all, and a stale entry is never used: its stamp is simply never read again.

Every start gets its own copies: a run's graph must never share objects with another run's.
"""
from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Hashable

from django.conf import settings

from controlplane.deployments.models import Deployment
from controlplane.deployments.selectors import deployment_execution_graph
from controlplane.executions.services.attempts import runs_in_transaction
from controlplane.fleet.models import queue_name_for
from pipelines.engine.segments import compile_segments

# Per process: at most this many deployments, and this many characters of graph and canvas JSON
# (a 2,000-node graph is about a megabyte; most are a few kilobytes).
CACHE_SIZE = 256
CACHE_CHARS = 32 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class StartCanvas:
    """A run's pinned graph and compiled canvas (fresh copies), and what the start records of them."""

    graph: dict[str, Any]
    canvas: dict[str, Any]
    strategy: str
    task_count: int
    queues: dict[str, str]  # {group slug: Celery queue} of every job and compensation
    placements: list[tuple[str, str | None]]  # (path, group slug) to check for liveness


@dataclass(frozen=True, slots=True)
class _Compiled:
    graph_json: str
    canvas_json: str
    strategy: str
    task_count: int
    queues: tuple[tuple[str, str], ...]
    placements: tuple[tuple[str, str | None], ...]

    @property
    def size(self) -> int:
        return len(self.graph_json) + len(self.canvas_json)

    def fresh(self) -> StartCanvas:
        return StartCanvas(json.loads(self.graph_json), json.loads(self.canvas_json), self.strategy, self.task_count,
                           dict(self.queues), list(self.placements))


_CACHE: OrderedDict[Hashable, _Compiled] = OrderedDict()
_CACHED_CHARS = 0
_LOCK = threading.Lock()  # gunicorn serves a process's requests on several threads


def start_canvas(deployment: Deployment, company_slug: str, stamp: Hashable) -> StartCanvas:
    """The graph and canvas a new run of `deployment` pins, as of the artifact `stamp` just read."""
    key = (deployment.pk, deployment.version_id, company_slug, stamp)
    with _LOCK:
        compiled = _CACHE.get(key)
        if compiled is not None:
            _CACHE.move_to_end(key)
    if compiled is None:
        compiled = _compile(deployment, company_slug)
        _remember(key, compiled)
    return compiled.fresh()


def _remember(key: Hashable, compiled: _Compiled) -> None:
    global _CACHED_CHARS
    with _LOCK:
        previous = _CACHE.pop(key, None)
        _CACHED_CHARS -= previous.size if previous else 0
        _CACHE[key] = compiled
        _CACHED_CHARS += compiled.size
        while len(_CACHE) > 1 and (len(_CACHE) > CACHE_SIZE or _CACHED_CHARS > CACHE_CHARS):
            _, evicted = _CACHE.popitem(last=False)
            _CACHED_CHARS -= evicted.size


def start_canvas_cache_clear() -> None:
    global _CACHED_CHARS
    with _LOCK:
        _CACHE.clear()
        _CACHED_CHARS = 0


def fusible_nodes(jobs: list[dict[str, Any]]) -> set[str]:
    """The jobs a chain may run several of in one task (`pipelines.canvas.fuse_steps`), and a wide
    chord header several of its parts in one (`pipelines.canvas.pack_headers`).

    Side-effect-free steps only: each is claimed and recorded in one go after it ran, so a fused
    task that dies half-way leaves the recorded ones recorded and the rest unclaimed, and its
    redelivery (or the watchdog's re-drive) runs just the rest. A step with a `timeout_s` of its
    own is not fused: Celery enforces time limits per task, and a fused task's limit would be
    some other step's.
    """
    return {job["id"] for job in jobs
            if job["replicas"] == 1 and not job.get("timeout_s") and runs_in_transaction(job)}


def _compile(deployment: Deployment, company_slug: str) -> _Compiled:
    built = compile_graph(deployment_execution_graph(deployment), company_slug)
    return _Compiled(json.dumps(built.graph), json.dumps(built.canvas), built.strategy, built.task_count,
                     tuple(sorted(built.queues.items())), tuple(built.placements))


def compile_graph(graph: dict[str, Any], company_slug: str) -> StartCanvas:
    """The canvas of an execution graph, with its queues and placements: what a start pins, from
    the deployment's artifacts here or from a graph of a replay's choosing (`replay_canvas`).
    `graph` is kept as it is, not copied."""
    jobs = graph.get("jobs") or []
    if not jobs:  # nothing to compile: the start refuses it (`not_deployed`)
        return StartCanvas(graph, {}, "", 0, {}, [])
    # Gates (approval, map) cut the canvas into segments published one at a time (`segments`).
    plan = compile_segments(jobs, graph.get("edges", []), fusible=fusible_nodes(jobs),
                            header_parts=int(settings.ENGINE_HEADER_PARTS))
    canvas = {**plan, "timeouts": {job["id"]: job["timeout_s"] for job in jobs if job.get("timeout_s")}}
    placements: list[tuple[str, str | None]] = []
    for job in jobs:
        placements.append((f"jobs.{job['id']}.group", job["group"]))
        compensate = job.get("compensate") or {}
        if compensate.get("group"):
            placements.append((f"jobs.{job['id']}.compensate.group", compensate["group"]))
    queues = {slug: queue_name_for(company_slug, slug) for _, slug in placements if slug}
    return StartCanvas(graph, canvas, plan["strategy"], plan["task_count"], queues, placements)
