"""The graph and canvas a replay pins when it is not what the deployment runs now.

`version: pinned` replays on the original run's own pinned graph (its version, its artifacts as
they were), and a dead-letter replay may run its failed step with a modified input: both hand
`execution_start` a `StartCanvas` of their own (`pin=`), compiled here from a graph by the builder
`start_canvas` compiles the deployment's with (so a replay's steps are fused alike).
"""
from __future__ import annotations

import copy
from typing import Any

from controlplane.executions.services.start_canvas import StartCanvas, compile_graph


def canvas_for_graph(graph: dict[str, Any], company_slug: str) -> StartCanvas:
    """A fresh `StartCanvas` of `graph` (copied: the run never shares objects with its source)."""
    return compile_graph(copy.deepcopy(graph), company_slug)


def with_configs(graph: dict[str, Any], configs: dict[str, Any]) -> dict[str, Any]:
    """A copy of `graph` whose jobs in `configs` run with that config instead (already rendered).
    Such a job no longer is its deployed artifact: it runs from the graph (no `artifact` digest),
    as the operator who modified it asked."""
    graph = copy.deepcopy(graph)
    for job in graph.get("jobs", []):
        if job["id"] in configs:
            job["config"] = copy.deepcopy(configs[job["id"]])
            job.pop("artifact", None)
    return graph


def downstream_of(graph: dict[str, Any], node_id: str) -> set[str]:
    """`node_id` and every node reachable from it along the graph's edges."""
    out: dict[str, list[str]] = {}
    for edge in graph.get("edges", []):
        out.setdefault(edge["from"], []).append(edge["to"])
    seen, stack = {node_id}, [node_id]
    while stack:
        for child in out.get(stack.pop(), []):
            if child not in seen:
                seen.add(child)
                stack.append(child)
    return seen
