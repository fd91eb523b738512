"""The job diff: planned jobs against deployed jobs, by job id.

``diff_jobs`` gives one ``JobChange`` per job id on either side (create, update, delete,
replace or noop, with the changed spec paths, their old and new values, and any move between
worker groups); ``changed_values`` lists where two specs differ and ``changed_fields`` the
dotted paths alone. ``pipelines.planner``
re-exports everything here, so ``from pipelines.planner import diff_jobs, JobChange`` works.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the planner's data; imported for annotations only (no import cycle)
    from pipelines.planner import DeployedJob, Job

ACTIONS = ("create", "update", "delete", "replace", "noop")


class _Absent:
    """The value of a spec path one side does not have (``old`` of an added key, ``new`` of a removed one)."""

    def __repr__(self) -> str:
        return "ABSENT"

    def __reduce__(self) -> str:  # copies and pickles stay the one instance, so `is ABSENT` holds
        return "ABSENT"


ABSENT = _Absent()


@dataclass(frozen=True)
class FieldChange:
    """One changed spec path with its values; ``ABSENT`` where a side lacks the key."""

    path: str
    old: Any
    new: Any


@dataclass(frozen=True)
class JobChange:
    """How one job changes; ``fields`` are dotted spec paths (``config.url``, ``replicas``)."""

    job_id: str
    action: str  # "create" | "update" | "delete" | "replace" | "noop"
    fields: tuple[str, ...] = ()
    moved_from: str | None = None
    moved_to: str | None = None
    disruptive: bool = False
    values: tuple[FieldChange, ...] = ()  # old -> new per changed path, in ``fields`` order

    @property
    def moved(self) -> bool:
        return self.moved_from is not None or self.moved_to is not None


def summary_bucket(change: JobChange) -> str:
    """Where the summary counts ``change``: its action, except that an update which moves the
    job to another group is a ``move`` (a replace stays a replace: it is recreated anyway)."""
    return "move" if change.action == "update" and change.moved else change.action


def summarize(changes: Iterable[JobChange]) -> dict[str, int]:
    """Jobs per bucket of ``summary_bucket``; every job is counted exactly once."""
    counts = dict.fromkeys((*ACTIONS, "move"), 0)
    for change in changes:
        counts[summary_bucket(change)] += 1
    return counts


def diff_jobs(jobs: Iterable[Job], deployed: Mapping[str, DeployedJob]) -> tuple[JobChange, ...]:
    """One ``JobChange`` per job id in either side, sorted by id.

    A changed ``type`` is a ``replace``; any other spec change an ``update`` listing the changed
    spec paths. A changed ``group`` is a move (``moved_from``/``moved_to``, ``disruptive``),
    reported on the update or replace it belongs to.
    """
    changes: list[JobChange] = []
    planned: set[str] = set()
    for job in jobs:
        planned.add(job.job_id)
        old = deployed.get(job.job_id)
        if old is None:
            changes.append(JobChange(job.job_id, "create"))
            continue
        if old.digest == job.digest and old.group == job.group:
            changes.append(JobChange(job.job_id, "noop"))
            continue
        values = tuple(changed_values(old.spec, job.spec))
        fields = tuple(v.path for v in values)
        if not fields and old.type == job.type and old.group == job.group and old.replicas == job.replicas:
            changes.append(JobChange(job.job_id, "noop"))
            continue
        action = "replace" if old.type != job.type else "update"
        moved = old.group != job.group
        changes.append(JobChange(
            job.job_id, action, fields or ("spec",),
            moved_from=old.group if moved else None,
            moved_to=job.group if moved else None,
            disruptive=moved,
            values=values,
        ))
    for job_id in deployed:
        if job_id not in planned:
            changes.append(JobChange(job_id, "delete"))
    changes.sort(key=lambda c: c.job_id)
    return tuple(changes)


def changed_fields(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted paths where two specs differ; lists and scalars count as one field."""
    return [change.path for change in changed_values(old, new, prefix)]


def changed_values(old: Any, new: Any, prefix: str = "") -> list[FieldChange]:
    """Where two specs differ, with both values; mappings are compared key by key (sorted),
    lists and scalars as one value."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        out: list[FieldChange] = []
        for key in sorted(old.keys() | new.keys()):
            path = f"{prefix}.{key}" if prefix else str(key)
            if key not in old or key not in new:
                out.append(FieldChange(path, old.get(key, ABSENT), new.get(key, ABSENT)))
            elif old[key] != new[key]:
                out += changed_values(old[key], new[key], path)
        return out
    return [FieldChange(prefix or "spec", old, new)] if old != new else []
