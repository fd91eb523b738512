"""What starts a workflow's runs besides a call: its ``schedules`` and its ``on`` (chaining) keys.

A graph document may declare::

    schedules:                       # an explicit [] means none (apply removes every schedule)
      - name: nightly
        cron: "0 2 * * *"            # or every_s: 30 (an interval, in seconds)
        timezone: Europe/Paris       # IANA zone, default UTC
        overlap: skip                # skip | buffer_one | allow_all, default skip
        catchup_window_s: 3600       # missed ticks this recent still fire after an outage; default 0
        input: {kind: nightly}       # the run's input, default {}
    on: {workflow: ingest, status: succeeded}   # or a list of them; status succeeded|failed|any

``trigger_issues`` reports every problem with its path (``structure.parse_structure`` adds them to
a document's issues); ``schedule_specs`` and ``chain_specs`` read a valid document;
``diff_schedules`` compares planned schedules with deployed ones; ``chain_cycle`` finds a loop
of chained workflows (``a -> b -> a``) so the planner can refuse it with the path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone as dt_timezone
from typing import Any, Iterable, Mapping

from pipelines import errors as E
from pipelines.cron import CronError, parse_cron, zone_info
from pipelines.documents import _copy, is_int, json_type
from pipelines.errors import Issue
from pipelines.graph import find_cycle

OVERLAP_POLICIES = ("skip", "buffer_one", "allow_all")
CHAIN_STATUSES = ("succeeded", "failed", "any")
SCHEDULE_FIELDS = frozenset({"name", "cron", "every_s", "timezone", "overlap", "catchup_window_s", "input"})
ON_FIELDS = frozenset({"workflow", "status"})
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
WORKFLOW_SLUG_RE = re.compile(r"^[-a-zA-Z0-9_]{1,50}$")
MIN_EVERY_S = 1
MAX_CATCHUP_S = 7 * 24 * 3600


@dataclass(frozen=True)
class ScheduleSpec:
    """One declared schedule; exactly one of ``cron`` and ``every_s`` is set."""

    name: str
    cron: str | None
    every_s: int | None
    timezone: str = "UTC"
    overlap: str = "skip"
    catchup_window_s: int = 0
    input: Mapping | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "cron": self.cron, "every_s": self.every_s, "timezone": self.timezone,
                "overlap": self.overlap, "catchup_window_s": self.catchup_window_s,
                "input": _copy(dict(self.input or {}))}

    @classmethod
    def from_dict(cls, data: Mapping) -> ScheduleSpec:
        return cls(name=data["name"], cron=data.get("cron"), every_s=data.get("every_s"),
                   timezone=data.get("timezone") or "UTC", overlap=data.get("overlap") or "skip",
                   catchup_window_s=data.get("catchup_window_s") or 0, input=_copy(data.get("input") or {}))

    @property
    def when(self) -> str:
        """``"0 2 * * * Europe/Paris"`` or ``"every 30s"``: how the plan shows it."""
        return f"{self.cron} {self.timezone}" if self.cron else f"every {self.every_s}s"


@dataclass(frozen=True)
class ChainSpec:
    """Run this workflow when a run of ``workflow`` (a slug of the same project) ends with ``status``."""

    workflow: str
    status: str = "succeeded"

    def to_dict(self) -> dict[str, str]:
        return {"workflow": self.workflow, "status": self.status}


@dataclass(frozen=True)
class ScheduleChange:
    """How one schedule changes on apply: create, update (with the changed fields), delete or noop."""

    name: str
    action: str
    fields: tuple[str, ...] = ()
    old: ScheduleSpec | None = None
    new: ScheduleSpec | None = None


# --------------------------------------------------------------------------- interval ticks

EPOCH = datetime(1970, 1, 1, tzinfo=dt_timezone.utc)


def interval_tick(every_s: int, at: datetime, anchor: datetime | None = None) -> datetime:
    """The latest tick ``anchor + n * every_s`` at or before ``at`` (aware; n may be negative), in
    UTC. The default anchor is the epoch, so ``every_s: 60`` ticks on the minute."""
    anchor = EPOCH if anchor is None else anchor.astimezone(dt_timezone.utc)
    # Whole microseconds: float seconds would put a tick a hair past `at` after decades of them.
    step = timedelta(seconds=every_s)
    return anchor + ((at.astimezone(dt_timezone.utc) - anchor) // step) * step


def first_interval_tick(every_s: int, after: datetime) -> datetime:
    """The first epoch-aligned tick strictly after ``after``: the anchor apply gives a new interval
    schedule (its first tick comes within one interval, on the same grid as every other one)."""
    return interval_tick(every_s, after) + timedelta(seconds=every_s)


# --------------------------------------------------------------------------- validation


def trigger_issues(doc: Mapping) -> list[Issue]:
    """Every problem of the ``schedules`` and ``on`` keys of ``doc``, each with its path."""
    issues: list[Issue] = []
    if "schedules" in doc and doc["schedules"] is not None:
        raw = doc["schedules"]
        if not isinstance(raw, list):
            issues.append(_bad("schedules", "schedules", "a list of schedules ([] for none)", raw))
        else:
            seen: dict[str, int] = {}
            for i, item in enumerate(raw):
                issues += _schedule_issues(item, f"schedules[{i}]")
                name = item.get("name") if isinstance(item, dict) else None
                if isinstance(name, str):
                    if name in seen:
                        issues.append(Issue(f"schedules[{i}].name", f"duplicate schedule name {name!r} (first "
                                            f"used by schedules[{seen[name]}]); rename one", E.DUPLICATE_ID))
                    seen.setdefault(name, i)
    if "on" in doc and doc["on"] is not None:
        raw = doc["on"]
        items = raw if isinstance(raw, list) else [raw]
        for i, item in enumerate(items):
            issues += _on_issues(item, f"on[{i}]" if isinstance(raw, list) else "on")
    return issues


def _schedule_issues(raw: Any, p: str) -> list[Issue]:
    if not isinstance(raw, dict):
        return [_bad(p, "a schedule", "a mapping with name and cron (or every_s)", raw)]
    issues = [Issue(f"{p}.{k}", f"unknown schedule field {k!r}; known fields: {', '.join(sorted(SCHEDULE_FIELDS))}",
                    E.INVALID_FIELD) for k in sorted(set(raw) - SCHEDULE_FIELDS)]
    name = raw.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        issues.append(Issue(f"{p}.name", f"schedule name {name!r} is invalid; use 1-64 characters of a-z, 0-9, "
                            "'_' and '-', starting with a letter or digit", E.INVALID_ID))
    cron, every = raw.get("cron"), raw.get("every_s")
    if (cron is None) == (every is None):
        issues.append(Issue(p, "a schedule needs exactly one of cron (e.g. '0 2 * * *') and every_s (seconds)",
                            E.INVALID_FIELD))
    if cron is not None:
        try:
            parse_cron(cron)
        except CronError as exc:
            issues.append(Issue(f"{p}.cron", str(exc), E.INVALID_FIELD))
    if every is not None and (not is_int(every) or every < MIN_EVERY_S):
        issues.append(_bad(f"{p}.every_s", "every_s", f"an integer number of seconds >= {MIN_EVERY_S}", every))
    tz = raw.get("timezone", "UTC")
    try:
        zone_info(tz)
    except CronError as exc:
        issues.append(Issue(f"{p}.timezone", str(exc), E.INVALID_FIELD))
    overlap = raw.get("overlap", "skip")
    if overlap not in OVERLAP_POLICIES:
        issues.append(_bad(f"{p}.overlap", "overlap", "'skip', 'buffer_one' or 'allow_all'", overlap))
    window = raw.get("catchup_window_s", 0)
    if not is_int(window) or not 0 <= window <= MAX_CATCHUP_S:
        issues.append(_bad(f"{p}.catchup_window_s", "catchup_window_s",
                           f"an integer number of seconds from 0 to {MAX_CATCHUP_S}", window))
    if raw.get("input") is not None and not isinstance(raw.get("input"), dict):
        issues.append(_bad(f"{p}.input", "input", "a mapping (the run's input)", raw.get("input")))
    return issues


def _on_issues(raw: Any, p: str) -> list[Issue]:
    if not isinstance(raw, dict):
        return [_bad(p, "on", "a mapping {workflow: <slug>, status: succeeded|failed|any} or a list of them", raw)]
    issues = [Issue(f"{p}.{k}", f"unknown on field {k!r}; known fields: workflow, status", E.INVALID_FIELD)
              for k in sorted(set(raw) - ON_FIELDS)]
    slug = raw.get("workflow")
    if not isinstance(slug, str) or not WORKFLOW_SLUG_RE.match(slug):
        issues.append(_bad(f"{p}.workflow", "on.workflow", "the slug of a workflow of the same project", slug))
    status = raw.get("status", "succeeded")
    if status not in CHAIN_STATUSES:
        issues.append(_bad(f"{p}.status", "on.status", "'succeeded', 'failed' or 'any'", status))
    return issues


def _bad(path: str, what: str, expected: str, got: Any) -> Issue:
    text = repr(got)
    short = text if len(text) <= 40 else text[:37] + "..."
    return Issue(path, f"{what} must be {expected}, got {json_type(got)} {short}", E.INVALID_FIELD)


# --------------------------------------------------------------------------- reading


def schedule_specs(doc: Mapping) -> tuple[ScheduleSpec, ...]:
    """The schedules of a valid document (none when the key is absent, null or [])."""
    out = []
    for raw in doc.get("schedules") or ():
        out.append(ScheduleSpec(
            name=raw["name"], cron=" ".join(raw["cron"].split()) if raw.get("cron") is not None else None,
            every_s=raw.get("every_s"), timezone=raw.get("timezone", "UTC"), overlap=raw.get("overlap", "skip"),
            catchup_window_s=raw.get("catchup_window_s", 0), input=_copy(raw.get("input") or {}),
        ))
    return tuple(sorted(out, key=lambda s: s.name))


def chain_specs(doc: Mapping) -> tuple[ChainSpec, ...]:
    """The ``on`` triggers of a valid document, deduplicated and sorted."""
    raw = doc.get("on")
    items = raw if isinstance(raw, list) else ([raw] if raw else [])
    specs = {ChainSpec(item["workflow"], item.get("status", "succeeded")) for item in items}
    return tuple(sorted(specs, key=lambda c: (c.workflow, c.status)))


def status_matches(wanted: str, run_status: str) -> bool:
    """Whether a finished run's status fires a chain that waits for ``wanted``.

    A run whose saga ran (compensated, compensation_failed) failed; a cancelled run fires nothing.
    """
    failed = run_status in ("failed", "compensated", "compensation_failed")
    if wanted == "succeeded":
        return run_status == "succeeded"
    if wanted == "failed":
        return failed
    return run_status == "succeeded" or failed


# --------------------------------------------------------------------------- plan


def diff_schedules(planned: Iterable[ScheduleSpec], deployed: Mapping[str, ScheduleSpec]) -> tuple[ScheduleChange, ...]:
    """One change per schedule name on either side, sorted by name."""
    changes = []
    planned = {s.name: s for s in planned}
    for name in sorted(planned.keys() | deployed.keys()):
        new, old = planned.get(name), deployed.get(name)
        if old is None:
            changes.append(ScheduleChange(name, "create", new=new))
        elif new is None:
            changes.append(ScheduleChange(name, "delete", old=old))
        else:
            a, b = old.to_dict(), new.to_dict()
            fields = tuple(k for k in sorted(a) if a[k] != b[k])
            changes.append(ScheduleChange(name, "update" if fields else "noop", fields, old, new))
    return tuple(changes)


def chain_cycle(workflow: str, upstreams: Iterable[str], others: Mapping[str, Iterable[str]]) -> list[str] | None:
    """A loop of chained workflows through ``workflow``, or None.

    ``upstreams`` are the workflows ``workflow`` would be triggered by; ``others`` maps every other
    deployed workflow to the workflows that trigger it. The cycle lists slugs in run order with the
    first repeated at the end (``['a', 'b', 'a']``: a run of a starts b, which starts a).
    """
    edges = {(up, down) for down, ups in others.items() if down != workflow for up in ups}
    edges |= {(up, workflow) for up in upstreams}
    nodes = sorted({n for pair in edges for n in pair})
    self_loop = next((up for up, down in sorted(edges) if up == down), None)
    if self_loop is not None:
        return [self_loop, self_loop]
    cycle = find_cycle(nodes, sorted(edges))
    if not cycle:
        return None
    if workflow in cycle[:-1]:  # start the path at the workflow being planned
        i = cycle.index(workflow)
        cycle = cycle[i:-1] + cycle[:i] + [workflow]
    return cycle


def chain_cycle_issue(cycle: list[str]) -> Issue:
    return Issue("on", f"chained workflows loop: {' -> '.join(cycle)}; a run would start itself again, "
                       "remove one of these `on` triggers", E.CYCLE)
