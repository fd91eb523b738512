"""The deployment planner: a published graph + fleet + what is deployed -> a ``Plan``.

``plan_deployment`` is pure: it reads its inputs, never mutates them, and returns frozen data.
Stages, each a function of the previous one's output:

1. validate the document's structure once (``structure.parse_structure``);
2. expand blueprints and templates (``blueprints.expand_graph``): stable job ids;
3. place jobs: group and replicas from overrides keyed by job id or blueprint alias (the most
   specific key wins: ``harvest/fetch`` over ``harvest``), else the node's own value (an
   instance's ``group``/``replicas`` apply to its inner nodes), else ``default_group`` / 1;
4. resolve transports: a ``landing`` edge ``P -> C`` becomes ``P -> W -> R -> C`` with adapter jobs
   ``W = "P->C/landing-write"`` (type ``landing_write``, on P's group) and
   ``R = "P->C/landing-read"`` (type ``landing_read``, on C's group), both configured with
   ``{store, key: "{{ .execution.id }}/P->C", edge: "P->C"}``. Ids depend only on P and C, and
   ``>`` cannot occur in a node id, so adapters never collide with jobs;
5. check what users hit: groups (``missing_group``, ``unknown_group``, ``no_live_worker``),
   advertised step types (``unsupported_step_type``), secrets (``missing_secret``), step config
   (``missing_config``/``invalid_config`` via the step registry, ``invalid_jq``), overrides
   naming nothing (``unknown_target``), cycles created by expansion; warn on capacity (the widest set of a group's jobs that may
   run at once, weighted by replicas, above its live slots);
6. render one artifact (``spec``) per job and its digest;
7. diff against the deployed jobs by job id (``diff_jobs``), and the document's ``schedules``
   against the deployed ones by name (``triggers.diff_schedules``; an explicit ``[]`` deletes all).

The artifact spec is ``{type, config, retry, timeout_s, compensate, replicas, group, upstream,
downstream, branches}`` (plus ``interruptible: true`` on a job that declares it, absent otherwise so
other specs keep their digest); ``config`` keeps ``{"$secret": name}`` references as they are. The
digest is ``"sha256:" + sha256(json.dumps(spec, sort_keys=True, separators=(",", ":"),
ensure_ascii=False))`` -- the same bytes as ``graph.canonical_json`` for a spec.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pipelines import errors as E
from pipelines.blueprints import BlueprintRef, ExpandedNode, expand_graph
from pipelines.concurrency import widest_concurrent
from pipelines.errors import Issue
from pipelines.graph import find_cycle, is_int
from pipelines.job_diff import (  # noqa: F401  re-exported: callers import them from here
    ABSENT,
    ACTIONS,
    FieldChange,
    JobChange,
    changed_fields,
    changed_values,
    diff_jobs,
    summarize,
    summary_bucket,
)
from pipelines.secrets import MISSING_SECRET, secret_issues  # noqa: F401  MISSING_SECRET re-exported
from pipelines.steps import get_step_type
from pipelines.steps.map import DEFAULT_MAX_PARALLEL, MAP_TYPE
from pipelines.templating import template_issues
from pipelines.triggers import ScheduleChange, ScheduleSpec, diff_schedules, schedule_specs, trigger_issues

FORMAT_VERSION = 1
STEP, LANDING_WRITE, LANDING_READ = "step", "landing_write", "landing_read"

MISSING_GROUP = "missing_group"
UNKNOWN_GROUP = "unknown_group"
NO_LIVE_WORKER = "no_live_worker"
UNSUPPORTED_STEP_TYPE = "unsupported_step_type"
UNKNOWN_TARGET = "unknown_target"
CAPACITY = "capacity"


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class GroupState:
    """A worker group as the fleet reports it; ``concurrency`` is the sum of live slots."""

    slug: str
    live_workers: int
    concurrency: int
    step_types: frozenset[str] = frozenset()


@dataclass(frozen=True)
class FleetSnapshot:
    """Every worker group of the company, keyed by slug."""

    groups: Mapping[str, GroupState]


@dataclass(frozen=True)
class DeployedJob:
    """One job as the active deployment holds it (a ``JobDeployment``)."""

    job_id: str
    type: str
    group: str | None
    replicas: int
    spec: dict
    digest: str

    @classmethod
    def from_job(cls, job: Job) -> DeployedJob:
        return cls(job.job_id, job.type, job.group, job.replicas, job.spec, job.digest)


@dataclass(frozen=True)
class Job:
    """One planned job: its rendered artifact (``spec``), digest and where it came from."""

    job_id: str
    type: str | None
    group: str | None
    replicas: int
    spec: dict
    digest: str
    source: str  # document path: "nodes[3](fanout-ingest@2).nodes[1]", or "edges[4]" for adapters
    kind: str = STEP  # "step" | "landing_write" | "landing_read"


@dataclass(frozen=True)
class Plan:
    """The previewed change set. ``changes`` holds one entry per job, noops included."""

    jobs: tuple[Job, ...]
    edges: tuple[tuple[str, str], ...]
    changes: tuple[JobChange, ...]
    errors: tuple[Issue, ...] = ()
    warnings: tuple[Issue, ...] = ()
    format_version: int = FORMAT_VERSION
    schedules: tuple[ScheduleSpec, ...] = ()
    schedule_changes: tuple[ScheduleChange, ...] = ()

    @property
    def summary(self) -> dict[str, int]:
        """Jobs per action plus ``move``, each job once: an update that moves a job is a ``move`` only."""
        return summarize(self.changes)

    @property
    def has_changes(self) -> bool:
        return any(c.action != "noop" for c in (*self.changes, *self.schedule_changes))

    @property
    def ok(self) -> bool:
        return not self.errors


# --------------------------------------------------------------------------- planning


@dataclass
class _Draft:
    job_id: str
    kind: str
    type: str | None
    config: dict
    source: str
    type_path: str
    group: str | None = None
    group_path: str | None = None
    replicas: int = 1
    retry: Any = None
    timeout_s: Any = None
    compensate: Any = None
    interruptible: Any = False
    upstream: set = field(default_factory=set)
    downstream: set = field(default_factory=set)
    branches: dict = field(default_factory=dict)


def plan_deployment(
    graph: Mapping,
    *,
    blueprints: Mapping[BlueprintRef, Mapping],
    templates: Mapping[str, Mapping],
    placement: Mapping[str, str],
    replicas: Mapping[str, int],
    fleet: FleetSnapshot,
    deployed: Mapping[str, DeployedJob],
    secrets: frozenset[str],
    landing_store: str,
    default_group: str | None = None,
    deployed_schedules: Mapping[str, ScheduleSpec] | None = None,
) -> Plan:
    """Plan ``graph`` onto ``fleet`` and diff it against ``deployed``; see the module docstring."""
    expansion = expand_graph(graph, blueprints=blueprints, templates=templates)
    errors: list[Issue] = list(expansion.issues)
    errors += _structure_issues(graph, {i.path for i in errors})
    warnings: list[Issue] = []

    drafts = {n.job_id: _step_draft(n) for n in expansion.nodes}
    placement_keys, replica_keys = set(placement), set(replicas)
    for node in expansion.nodes:
        _place(drafts[node.job_id], node, placement, placement_keys, replicas, replica_keys, default_group, errors)
    edges = _link(drafts, expansion.edges, landing_store, placement, replicas, errors)
    targets = set(drafts) | expansion.aliases
    _check_keys(placement, "placement", targets, errors)
    _check_keys(replicas, "replicas", targets, errors)
    if not any(i.code == E.CYCLE for i in errors):
        _check_cycles(drafts, edges, errors)
    _check_jobs(drafts.values(), fleet, secrets, errors)
    acyclic = not any(i.code == E.CYCLE for i in errors)
    _check_capacity(drafts.values(), edges if acyclic else set(), fleet, warnings)

    jobs = tuple(_render(drafts[job_id]) for job_id in sorted(drafts))
    schedules = schedule_specs(graph) if not trigger_issues(graph) else ()
    return Plan(
        jobs=jobs,
        edges=tuple(sorted(edges)),
        changes=diff_jobs(jobs, deployed),
        errors=_unique(errors),
        warnings=_unique(warnings),
        schedules=schedules,
        schedule_changes=diff_schedules(schedules, deployed_schedules or {}) if schedules or deployed_schedules else (),
    )


def _structure_issues(graph: Mapping, covered: set[str]) -> list[Issue]:
    """Structural issues of the top-level document that expansion does not already report.

    Structure knows only that ``harvest:in`` names a blueprint node; expansion knows whether the
    blueprint declares the port, so structure's ``dangling_edge`` reports are dropped in favour
    of expansion's own (and its ``unknown_port`` reports at the same path are deduplicated).
    """
    from pipelines.structure import parse_structure

    _, issues, _ = parse_structure(graph)
    return [i for i in issues if i.code != E.DANGLING_EDGE and i.path not in covered]


def _step_draft(node: ExpandedNode) -> _Draft:
    return _Draft(
        job_id=node.job_id,
        kind=STEP,
        type=node.type,
        config=node.config,
        source=node.path,
        type_path=f"{node.path}.type",
        retry=node.retry,
        timeout_s=node.timeout_s,
        compensate=node.compensate,
        interruptible=node.interruptible,
    )


def _check_keys(overrides: Mapping, name: str, targets: set[str], errors: list[Issue]) -> None:
    for key in overrides:
        if key not in targets:
            errors.append(Issue(f"{name}.{key}", f"{name} override for {key!r} names no job or blueprint "
                                "alias; fix the key or remove it", UNKNOWN_TARGET))


def _override(job_id: str, aliases: tuple[str, ...], overrides: Mapping, keys: set[str]):
    """``(key, value)`` of the most specific override for a job, or None."""
    if not keys:
        return None
    if job_id in keys:
        return job_id, overrides[job_id]
    for alias in reversed(aliases):
        if alias in keys:
            return alias, overrides[alias]
    return None


def _place(draft: _Draft, node: ExpandedNode, placement, placement_keys, replicas, replica_keys,
           default_group, errors) -> None:
    hit = _override(node.job_id, node.aliases, placement, placement_keys)
    if hit is not None:
        draft.group, draft.group_path = hit[1], f"placement.{hit[0]}"
    elif node.group is not None:
        draft.group, draft.group_path = node.group, node.group_path
    elif default_group is not None:
        draft.group, draft.group_path = default_group, "default_group"
    else:
        errors.append(Issue(f"{node.path}.group", f"job {node.job_id!r} has no worker group; set group on "
                            "the node, a placement override, or a default group", MISSING_GROUP))
    hit = _override(node.job_id, node.aliases, replicas, replica_keys)
    value, path = (hit[1], f"replicas.{hit[0]}") if hit is not None else (node.replicas, node.replicas_path)
    if value is None:
        return
    if not is_int(value) or value < 1:
        errors.append(Issue(path, f"replicas must be an integer >= 1, got {value!r}", E.INVALID_FIELD))
        return
    draft.replicas = value


def _link(drafts: dict, expanded_edges, landing_store, placement, replicas, errors) -> set:
    """Job-level edges; inserts landing adapters (mutates the drafts it owns)."""
    edges: set[tuple[str, str]] = set()

    def connect(src: str, dst: str, branch=None) -> None:
        edges.add((src, dst))
        drafts[src].downstream.add(dst)
        drafts[dst].upstream.add(src)
        if branch is not None:
            drafts[src].branches[dst] = branch

    for edge in expanded_edges:
        if edge.src not in drafts or edge.dst not in drafts:
            continue
        if edge.delivery != "landing":
            connect(edge.src, edge.dst, edge.branch)
            continue
        channel = f"{edge.src}->{edge.dst}"
        write_id, read_id = f"{channel}/landing-write", f"{channel}/landing-read"
        if write_id not in drafts:
            config = {"store": landing_store, "key": "{{ .execution.id }}/" + channel, "edge": channel}
            for job_id, kind, side in ((write_id, LANDING_WRITE, edge.src), (read_id, LANDING_READ, edge.dst)):
                end = drafts[side]
                drafts[job_id] = _Draft(job_id=job_id, kind=kind, type=kind, config=dict(config),
                                        source=edge.path, type_path=f"{edge.path}.delivery",
                                        group=end.group, group_path=end.group_path)
                _adapter_overrides(drafts[job_id], placement, replicas, errors)
        connect(edge.src, write_id, edge.branch)
        connect(write_id, read_id)
        connect(read_id, edge.dst)
    return edges


def _adapter_overrides(draft: _Draft, placement, replicas, errors) -> None:
    if draft.job_id in placement:
        draft.group, draft.group_path = placement[draft.job_id], f"placement.{draft.job_id}"
    if draft.job_id in replicas:
        value = replicas[draft.job_id]
        if is_int(value) and value >= 1:
            draft.replicas = value
        else:
            errors.append(Issue(f"replicas.{draft.job_id}", f"replicas must be an integer >= 1, got {value!r}",
                                E.INVALID_FIELD))


def _check_cycles(drafts: dict, edges: set, errors: list[Issue]) -> None:
    cycle = find_cycle(drafts.keys(), sorted(edges))
    if cycle:
        errors.append(Issue("edges", f"cycle {' -> '.join(repr(n) for n in cycle)} after blueprint "
                            "expansion; remove one of these edges", E.CYCLE))


def _check_jobs(drafts: Iterable[_Draft], fleet: FleetSnapshot, secrets: frozenset[str], errors) -> None:
    registry = _StepRegistry()
    for d in drafts:
        state = _group_state(d.group, d.group_path, fleet, errors)
        if state is not None and d.type and d.type not in state.step_types:
            errors.append(Issue(d.type_path, f"step type {d.type!r} is not advertised by the workers of group "
                                f"{d.group!r}; place the job on a group that runs it", UNSUPPORTED_STEP_TYPE))
        path = d.type_path[: -len(".type")] if d.kind == STEP else d.source
        child = _map_child_type(d)
        if state is not None and child is not None and child not in state.step_types:
            errors.append(Issue(f"{path}.config.step.type", f"step type {child!r} of map {d.job_id!r}'s items is not "
                                f"advertised by the workers of group {d.group!r}; place the map on a group that "
                                "runs it", UNSUPPORTED_STEP_TYPE))
        if d.kind == STEP:
            errors.extend(registry.issues(d.type, d.config, f"{path}.config", d.type_path))
        errors.extend(secret_issues(d.config, f"{path}.config", secrets))
        comp = d.compensate
        if isinstance(comp, Mapping) and comp.get("type"):
            comp_path = f"{path}.compensate"
            if comp.get("group"):
                comp_group, group_path = comp["group"], f"{comp_path}.group"
                comp_state = _group_state(comp_group, group_path, fleet, errors)
            else:
                comp_group, comp_state = d.group, state
            if comp_state is not None and comp["type"] not in comp_state.step_types:
                errors.append(Issue(f"{comp_path}.type", f"compensation step type {comp['type']!r} is not "
                                    f"advertised by group {comp_group!r}", UNSUPPORTED_STEP_TYPE))
            errors.extend(registry.issues(comp["type"], comp.get("config") or {}, f"{comp_path}.config",
                                          f"{comp_path}.type"))
            errors.extend(secret_issues(comp.get("config") or {}, f"{comp_path}.config", secrets))


def _map_child_type(d: _Draft) -> str | None:
    """The child step type a map job runs per item, None for any other job."""
    step = d.config.get("step") if d.type == MAP_TYPE and isinstance(d.config, Mapping) else None
    return step.get("type") if isinstance(step, Mapping) and isinstance(step.get("type"), str) else None


def _slots(d: _Draft) -> int:
    """How many slots a job may take at once: its replicas, a map's max_parallel items."""
    if d.type != MAP_TYPE:
        return d.replicas
    parallel = d.config.get("max_parallel") if isinstance(d.config, Mapping) else None
    return parallel if isinstance(parallel, int) and not isinstance(parallel, bool) and parallel > 0 \
        else DEFAULT_MAX_PARALLEL


def _group_state(group, path, fleet: FleetSnapshot, errors) -> GroupState | None:
    if group is None:
        return None
    state = fleet.groups.get(group)
    if state is None:
        known = ", ".join(sorted(fleet.groups)) or "none"
        errors.append(Issue(path, f"unknown worker group {group!r}; known groups: {known}", UNKNOWN_GROUP))
        return None
    if state.live_workers <= 0:
        errors.append(Issue(path, f"worker group {group!r} has no live worker; start a worker for it "
                            "or place the job elsewhere", NO_LIVE_WORKER))
        return None
    return state


class _StepRegistry:
    """Config checks through the step registry (``pipelines.steps``) and jq compile checks."""

    def __init__(self):
        self._get = get_step_type
        self._template_issues = template_issues
        self._types: dict[str, Any] = {}

    def step_type(self, name: str):
        if name not in self._types:
            try:
                self._types[name] = self._get(name)
            except (KeyError, LookupError, E.PipelineError):
                self._types[name] = None
        return self._types[name]

    def issues(self, type_name, config, config_path: str, type_path: str) -> list[Issue]:
        out: list[Issue] = []
        out += self._template_issues(config, config_path)
        if not isinstance(type_name, str):
            return out
        step = self.step_type(type_name)
        if step is None:
            out.append(Issue(type_path, f"unknown step type {type_name!r}; use a registered step type",
                             E.UNKNOWN_STEP_TYPE))
            return out
        return out + list(step.validate_config(config, config_path))


def _check_capacity(drafts: Iterable[_Draft], edges: set, fleet: FleetSnapshot, warnings: list[Issue]) -> None:
    """Warn where the jobs of a group that may run at the same time need more slots than it has.

    Only jobs with no path between them overlap, so the need is the group's heaviest antichain
    (``pipelines.concurrency``), weighted by replicas (a map's by its max_parallel); the plain sum of replicas bounds it from
    above, so the flow is computed only for groups whose sum exceeds their live slots.
    """
    by_group: dict[str, dict[str, int]] = {}
    for d in drafts:
        if d.group is not None:
            by_group.setdefault(d.group, {})[d.job_id] = _slots(d)
    for group in sorted(by_group):
        state = fleet.groups.get(group)
        if state is None or state.live_workers == 0 or sum(by_group[group].values()) <= state.concurrency:
            continue
        widest = widest_concurrent(by_group[group], edges)
        if widest.weight > state.concurrency:
            weights = by_group[group]
            shown = ", ".join(j if weights[j] == 1 else f"{j} x{weights[j]}" for j in widest.jobs[:5])
            if len(widest.jobs) > 5:
                shown += f" and {len(widest.jobs) - 5} more"
            warnings.append(Issue(
                f"fleet.{group}",
                f"group {group!r} needs {widest.weight} slots at once for jobs that can run at the same time "
                f"({shown}) but has {state.concurrency} live slots on {state.live_workers} worker(s); "
                "add workers or lower replicas (or a map's max_parallel)",
                CAPACITY,
            ))


def _render(d: _Draft) -> Job:
    spec = {
        "type": d.type,
        "config": d.config,
        "retry": d.retry,
        "timeout_s": d.timeout_s,
        "compensate": d.compensate,
        "replicas": d.replicas,
        "group": d.group,
        "upstream": sorted(d.upstream),
        "downstream": sorted(d.downstream),
        "branches": dict(sorted(d.branches.items())),
    }
    if d.interruptible is True:  # only when set: every other artifact keeps its digest
        spec["interruptible"] = True
    return Job(d.job_id, d.type, d.group, d.replicas, spec, spec_digest(spec), d.source, d.kind)


def spec_digest(spec: Mapping) -> str:
    """``"sha256:<hex>"`` of the canonical JSON of one artifact spec."""
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def _unique(issues: Iterable[Issue]) -> tuple[Issue, ...]:
    seen: dict[tuple, Issue] = {}
    for issue in issues:
        seen.setdefault((issue.path, issue.code), issue)  # one report per place and kind
    return E.sort_issues(seen.values())
