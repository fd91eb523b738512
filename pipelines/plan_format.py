"""Plan output for people (Terraform-like text) and machines (versioned JSON), and CLI exit codes.

Text: one line per changed job, then one indented ``path: old -> new`` line per changed spec
field (values as compact JSON, long ones cut to ``VALUE_WIDTH``); unchanged jobs are hidden
unless ``show_unchanged``::

      + harvest/fetch  (http on ingest, 2 replicas)
      ~ refresh
            config.url: "https://a.test/token" -> "https://b.test/token"
            replicas: 1 -> 3
      ~ load  moves ingest -> batch (disruptive)
      - old-step
    -/+ score  (type changes: destroyed and created again)
            type: "noop" -> "python"
      + schedule nightly 0 2 * * * Europe/Paris
      ~ schedule hourly 0 * * * * UTC
            overlap: "skip" -> "buffer_one"
      - schedule weekly 0 6 * * 1 UTC
    Error: nodes[3].group: unknown_group: unknown worker group 'gpu'; known groups: ...
    Warning: fleet.ingest: capacity: group 'ingest' needs 14 slots at once for jobs that can run at ...
    Plan: 1 to add, 1 to change, 1 to destroy, 1 to move, 1 to replace

The summary counts every job once (``job_diff.summary_bucket``): an update that moves a job to
another group is a move, not also a change. ``, N to replace`` is appended when N > 0.
"""

from __future__ import annotations

import json
from typing import Any

from pipelines.job_diff import ABSENT, FieldChange
from pipelines.planner import FORMAT_VERSION, Job, JobChange, Plan
from pipelines.triggers import ScheduleChange, ScheduleSpec

SYMBOLS = {"create": "+", "update": "~", "delete": "-", "replace": "-/+", "noop": " "}
EXIT_OK, EXIT_ERRORS, EXIT_CHANGES = 0, 1, 2
VALUE_WIDTH = 60  # characters of one shown value; the rest is cut off with "..."
FIELD_INDENT = " " * 8


def summary_line(plan: Plan) -> str:
    """``"1 to add, 2 to change, 0 to destroy, 1 to move"`` (+ ``", N to replace"`` when N > 0)."""
    s = plan.summary
    line = f"{s['create']} to add, {s['update']} to change, {s['delete']} to destroy, {s['move']} to move"
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
        lines += _change_lines(change, jobs.get(change.job_id))
    for change in plan.schedule_changes:
        if change.action != "noop" or show_unchanged:
            lines += _schedule_lines(change)
    if not plan.has_changes:
        lines.append("No changes. The deployment matches this version.")
    for issue in plan.errors:
        lines.append(f"Error: {issue.path}: {issue.code}: {issue.message}")
    for issue in plan.warnings:
        lines.append(f"Warning: {issue.path}: {issue.code}: {issue.message}")
    lines.append(f"Plan: {summary_line(plan)}")
    return "\n".join(lines) + "\n"


def show_value(value: Any, width: int = VALUE_WIDTH) -> str:
    """``value`` as compact JSON on one line, at most ``width`` characters (``...`` marks a cut)."""
    if value is ABSENT:
        return "(absent)"
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return text if len(text) <= width else text[: width - 3] + "..."


def _change_lines(change: JobChange, job: Job | None) -> list[str]:
    head = f"{SYMBOLS[change.action]:>3} {change.job_id}"
    if change.action == "create" and job is not None:
        replicas = f", {job.replicas} replicas" if job.replicas != 1 else ""
        return [f"{head}  ({job.type} on {job.group}{replicas})"]
    if change.action in ("delete", "noop"):
        return [head]
    notes = []
    if change.action == "replace":
        notes.append("(type changes: destroyed and created again)")
    if change.moved:
        notes.append(f"moves {change.moved_from} -> {change.moved_to}{' (disruptive)' if change.disruptive else ''}")
    shown = [v for v in change.values if not (change.moved and v.path == "group")]
    if not change.values:  # a plan stored before values were recorded: the field names alone
        notes.insert(0, ", ".join(f for f in change.fields if not (change.moved and f == "group")))
    lines = [f"{head}  {'  '.join(n for n in notes if n)}".rstrip()]
    lines += [f"{FIELD_INDENT}{v.path}: {show_value(v.old)} -> {show_value(v.new)}" for v in shown]
    return lines


def _schedule_lines(change: ScheduleChange) -> list[str]:
    spec = change.new or change.old
    lines = [f"{SYMBOLS[change.action]:>3} schedule {change.name} {spec.when}"]
    if change.action == "update":
        old, new = change.old.to_dict(), change.new.to_dict()
        lines += [f"{FIELD_INDENT}{f}: {show_value(old[f])} -> {show_value(new[f])}" for f in change.fields]
    return lines


def plan_to_json(plan: Plan) -> dict[str, Any]:
    """JSON-safe dict with ``format_version``; jobs carry their full rendered spec; ``schedules`` and
    ``schedule_changes`` appear when the version or the deployment has schedules."""
    out = {
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
                "values": [_value_to_json(v) for v in c.values],
            }
            for c in plan.changes
        ],
        "errors": [issue.to_dict() for issue in plan.errors],
        "warnings": [issue.to_dict() for issue in plan.warnings],
        "summary": plan.summary,
    }
    if plan.schedules or plan.schedule_changes:  # a workflow without schedules keeps the plan's old shape
        out["schedules"] = [spec.to_dict() for spec in plan.schedules]
        out["schedule_changes"] = [
            {"name": c.name, "action": c.action, "fields": list(c.fields),
             "old": c.old.to_dict() if c.old else None, "new": c.new.to_dict() if c.new else None}
            for c in plan.schedule_changes
        ]
    return out


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
            JobChange(c["job_id"], c["action"], tuple(c["fields"]), c["moved_from"], c["moved_to"], c["disruptive"],
                      tuple(_value_from_json(v) for v in c.get("values", ())))  # absent in older plans
            for c in data["changes"]
        ),
        errors=tuple(Issue(**i) for i in data["errors"]),
        warnings=tuple(Issue(**i) for i in data["warnings"]),
        format_version=version,
        schedules=tuple(ScheduleSpec.from_dict(s) for s in data.get("schedules", ())),  # absent in older plans
        schedule_changes=tuple(
            ScheduleChange(c["name"], c["action"], tuple(c["fields"]),
                           ScheduleSpec.from_dict(c["old"]) if c.get("old") else None,
                           ScheduleSpec.from_dict(c["new"]) if c.get("new") else None)
            for c in data.get("schedule_changes", ())
        ),
    )


def _value_to_json(value: FieldChange) -> dict[str, Any]:
    """``{path, old, new}``; a side that lacks the key has no ``old`` / ``new`` entry."""
    out: dict[str, Any] = {"path": value.path}
    if value.old is not ABSENT:
        out["old"] = value.old
    if value.new is not ABSENT:
        out["new"] = value.new
    return out


def _value_from_json(data: dict[str, Any]) -> FieldChange:
    return FieldChange(data["path"], data.get("old", ABSENT), data.get("new", ABSENT))


def exit_code(plan: Plan) -> int:
    """0 when nothing changes, 2 when something does, 1 when the plan has errors."""
    if plan.errors:
        return EXIT_ERRORS
    return EXIT_CHANGES if plan.has_changes else EXIT_OK
