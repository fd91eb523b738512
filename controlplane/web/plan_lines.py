"""A stored plan (`DeploymentPlan.plan`, `pipelines.plan_format.plan_to_json`) as lines to draw.

Jobs are grouped by the worker group they run on after the apply (a deleted job by the group it
ran on, from the deployment's current jobs), each line with its Terraform marker (`+ ~ - -/+`),
the `old -> new` values of a `~` and a `-/+`, and the move of a job to another group flagged as
disruptive. Unchanged jobs are counted, not listed. Pure: the caller passes what it read.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from pipelines.plan_format import SYMBOLS, show_value

UNKNOWN_GROUP = "(unknown group)"


@dataclass(frozen=True)
class ValueLine:
    path: str
    old: str
    new: str


@dataclass(frozen=True)
class PlanLine:
    job_id: str
    action: str  # create | update | delete | replace
    symbol: str
    type: str
    replicas: int | None
    moved_from: str | None
    moved_to: str | None
    disruptive: bool
    values: tuple[ValueLine, ...]


@dataclass(frozen=True)
class GroupBlock:
    group: str
    lines: tuple[PlanLine, ...]
    unchanged: int


def plan_groups(plan: Mapping[str, Any], *, deployed_groups: Mapping[str, str]) -> list[GroupBlock]:
    """The changes of `plan` by worker group (sorted by slug); `deployed_groups` maps the current
    deployment's job ids to their groups (where a deleted job ran)."""
    jobs = {job["job_id"]: job for job in plan.get("jobs", ())}
    lines: dict[str, list[PlanLine]] = {}
    unchanged: dict[str, int] = {}
    for change in plan.get("changes", ()):
        job = jobs.get(change["job_id"], {})
        group = job.get("group") or deployed_groups.get(change["job_id"]) or UNKNOWN_GROUP
        if change["action"] == "noop":
            unchanged[group] = unchanged.get(group, 0) + 1
            lines.setdefault(group, [])
            continue
        moved = change.get("moved_from") is not None or change.get("moved_to") is not None
        values = tuple(
            ValueLine(v["path"], show_value(v["old"]) if "old" in v else "(absent)",
                      show_value(v["new"]) if "new" in v else "(absent)")
            for v in change.get("values", ())
            if not (moved and v["path"] == "group")  # the move line says it
        )
        lines.setdefault(group, []).append(PlanLine(
            job_id=change["job_id"], action=change["action"], symbol=SYMBOLS[change["action"]],
            type=job.get("type") or "", replicas=job.get("replicas"), moved_from=change.get("moved_from"),
            moved_to=change.get("moved_to"), disruptive=bool(change.get("disruptive")), values=values,
        ))
    return [GroupBlock(group, tuple(lines[group]), unchanged.get(group, 0)) for group in sorted(lines)]
