"""Rows the engine tests need: versions from literal graphs, worker groups, live workers."""
from __future__ import annotations

import hashlib
import itertools
import json

from django.utils import timezone

from controlplane.fleet.models import Worker, WorkerGroup, WorkerStatus
from controlplane.workflows.models import Workflow, WorkflowVersion

_seq = itertools.count(1)


def job(node_id: str, type: str = "noop", *, group: str = "ingest", **fields) -> dict:
    return {"id": node_id, "type": type, "group": group, **fields}


def edges(*pairs) -> list[dict]:
    out = []
    for pair in pairs:
        src, dst, *branch = pair
        out.append({"from": src, "to": dst, **({"branch": branch[0]} if branch else {})})
    return out


def make_version(project, nodes: list[dict], edge_list: list[dict] = (), *, user, params: dict | None = None):
    """A published version holding the graph (written directly: the engine only reads versions)."""
    graph = {"nodes": nodes, "edges": list(edge_list)}
    if params:
        graph["params"] = params
    workflow = Workflow.objects.create(project=project, slug=f"wf{next(_seq)}", name="wf", status="active")
    return WorkflowVersion.objects.create(
        workflow=workflow, number=1, graph=graph, digest="sha256:" + hashlib.sha256(json.dumps(graph, sort_keys=True).encode()).hexdigest(), published_by=user
    )


def make_group(company, slug: str) -> WorkerGroup:
    return WorkerGroup.objects.get_or_create(company=company, slug=slug, defaults={"name": slug})[0]


def make_live_worker(hostname: str, *groups: WorkerGroup) -> Worker:
    """A worker row with a fresh heartbeat (unit tests: no process behind it)."""
    now = timezone.now()
    worker = Worker.objects.create(
        hostname=hostname, status=WorkerStatus.ONLINE, last_heartbeat=now, started_at=now, concurrency=1,
        queues=[g.queue_name for g in groups],
    )
    worker.groups.set(groups)
    return worker
