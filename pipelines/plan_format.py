"""Plan output for people (Terraform-like text) and machines (versioned JSON), and CLI exit codes.

Text: one line per changed job, unchanged jobs hidden unless ``show_unchanged``::

      + harvest/fetch  (http on ingest, 2 replicas)
      ~ refresh  config.url, replicas
      ~ load  group ingest -> batch (disruptive)
      - old-step
    -/+ score  type -> python
    Error: nodes[3].group: unknown_group: unknown worker group 'gpu'; known groups: ...
    Warning: fleet.ingest: capacity: group 'ingest' needs 14 replicas but has 8 live slots ...
    Plan: 3 to create, 1 to update, 0 to delete, 1 move

The summary counts every job once under its action; ``move`` counts the jobs whose group
changes (they are also counted as an update or replace). ``, N to replace`` is appended when N > 0.
"""

from __future__ import annotations

from typing import Any

from pipelines.planner import FORMAT_VERSION, Job, JobChange, Plan

SYMBOLS = {"create": "+", "update": "~", "delete": "-", "replace": "-/+", "noop": " "}
EXIT_OK, EXIT_ERRORS, EXIT_CHANGES = 0, 1, 2


def summary_line(plan: Plan) -> str:
    """``"3 to create, 1 to update, 0 to delete, 1 move"`` (+ ``", N to replace"`` when N > 0)."""
    s = plan.summary
    line = f"{s['create']} to create, {s['update']} to update, {s['delete']} to delete, " \
           f"{s['move']} move{'' if s['move'] == 1 else 's'}"
    if s["replace"]:
        line += f", {s['replace']} to replace"
    return line


def format_plan(plan: Plan, *, show_unchanged: bool = False) -> str:
    """The plan as text: change lines, then errors and warnings with paths, then the summary."""
    jobs = {job.job_id: job for job in plan.jobs}
    lines: list[str] = []
    for change in plan.changes:
        if change.action == "noop" and not show_unchanged:
            continue
        lines.append(_change_line(change, jobs.get(change.job_id)))
    if not any(c.action != "noop" for c in plan.changes):
        lines.append("No changes. The deployment matches this version.")
    for issue in plan.errors:
        lines.append(f"Error: {issue.path}: {issue.code}: {issue.message}")
    for issue in plan.warnings:
        lines.append(f"Warning: {issue.path}: {issue.code}: {issue.message}")
    lines.append(f"Plan: {summary_line(plan)}")
    return "\n".join(lines) + "\n"


def _change_line(change: JobChange, job: Job | None) -> str:
    head = f"{SYMBOLS[change.action]:>3} {change.job_id}"
    if change.action == "create" and job is not None:
        replicas = f", {job.replicas} replicas" if job.replicas != 1 else ""
        return f"{head}  ({job.type} on {job.group}{replicas})"
    if change.action in ("delete", "noop"):
        return head
    parts = [f for f in change.fields if not (change.moved and f == "group")]
    if change.action == "replace" and job is not None:
        parts = [f for f in parts if f != "type"]
        parts.insert(0, f"type -> {job.type}")
    if change.moved:
        note = " (disruptive)" if change.disruptive else ""
        parts.append(f"group {change.moved_from} -> {change.moved_to}{note}")
    return f"{head}  {', '.join(parts)}" if parts else head


def plan_to_json(plan: Plan) -> dict[str, Any]:
    """JSON-safe dict with ``format_version``; jobs carry their full rendered spec."""
    return {
        "format_version": plan.format_version,
        "jobs": [
            {
                "job_id": job.job_id,
                "type": job.type,
                "kind": job.kind,
                "group": job.group,
                "replicas": job.replicas,
                "source": job.source,
                "digest": job.digest,
                "spec": job.spec,
            }
            for job in plan.jobs
        ],
        "edges": [list(edge) for edge in plan.edges],
        "changes": [
            {
                "job_id": c.job_id,
                "action": c.action,
                "fields": list(c.fields),
                "moved_from": c.moved_from,
                "moved_to": c.moved_to,
                "disruptive": c.disruptive,
            }
            for c in plan.changes
        ],
        "errors": [issue.to_dict() for issue in plan.errors],
        "warnings": [issue.to_dict() for issue in plan.warnings],
        "summary": plan.summary,
    }


def plan_from_json(data: dict[str, Any]) -> Plan:
    """Inverse of ``plan_to_json``; refuses a format version it does not know."""
    from pipelines.errors import Issue, PipelineError

    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise PipelineError(f"plan format_version {version!r} is not supported; expected {FORMAT_VERSION}")
    return Plan(
        jobs=tuple(
            Job(j["job_id"], j["type"], j["group"], j["replicas"], j["spec"], j["digest"], j["source"], j["kind"])
            for j in data["jobs"]
        ),
        edges=tuple(tuple(e) for e in data["edges"]),
        changes=tuple(
            JobChange(c["job_id"], c["action"], tuple(c["fields"]), c["moved_from"], c["moved_to"], c["disruptive"])
            for c in data["changes"]
        ),
        errors=tuple(Issue(**i) for i in data["errors"]),
        warnings=tuple(Issue(**i) for i in data["warnings"]),
        format_version=version,
    )


def exit_code(plan: Plan) -> int:
    """0 when nothing changes, 2 when something does, 1 when the plan has errors."""
    if plan.errors:
        return EXIT_ERRORS
    return EXIT_CHANGES if plan.has_changes else EXIT_OK
