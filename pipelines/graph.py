"""The graph document (DESIGN.md "Graph document") as a typed, immutable model.

``parse_graph`` turns a document dict into a ``Graph`` (or raises ``GraphError`` listing every
structural problem with its path). Loading text, the canonical form and the digest live in
``pipelines.documents`` and are re-exported here (``load_document``, ``canonical_document``,
``canonical_json``, ``graph_digest``, ``is_int``, ``is_number``).

Step types, config schemas and jq are not checked here; that is ``validation.validate_graph``.
"""

from __future__ import annotations

import graphlib
import random
import re
from dataclasses import dataclass, field
from typing import Any, Iterator

from pipelines import errors as E
from pipelines.documents import (  # noqa: F401  re-exported: callers import them from here
    _copy,
    json_type,
    canonical_document,
    canonical_json,
    graph_digest,
    is_int,
    is_number,
    load_document,
)
from pipelines.errors import CycleError, GraphError, NodeNotFound

ID_RE = re.compile(r"^[a-z0-9_-]{1,64}$")
# A blueprint's input/output port name, as in an edge end "alias:port".
PORT_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# Blueprint expansion namespaces ids as "<alias>/<id>"; only expanded graphs may use them.
EXPANDED_ID_RE = re.compile(r"^[a-z0-9_-]{1,64}(/[a-z0-9_-]{1,64})*$")
BLUEPRINT_REF_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.-]*)@([1-9][0-9]*)$")
TEMPLATE_REF_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

DELIVERIES = ("local", "landing")
BACKOFFS = ("exponential", "fixed")
BRANCHES = ("true", "false")
CONDITION_TYPE = "condition"

NODE_KINDS = ("type", "blueprint", "template")
NODE_FIELDS = frozenset(
    {"id", *NODE_KINDS, "config", "group", "replicas", "retry", "timeout_s", "compensate",
     "params", "description", "interruptible"}
)
EDGE_FIELDS = frozenset({"from", "to", "delivery", "branch"})
RETRY_FIELDS = frozenset({"max_attempts", "backoff", "initial_delay_s", "max_delay_s", "jitter"})
COMPENSATE_FIELDS = frozenset({"type", "config", "group"})


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a failed step is tried again."""

    max_attempts: int = 1
    backoff: str = "exponential"
    initial_delay_s: float = 1.0
    max_delay_s: float = 30.0
    jitter: bool = True

    def delay_for(self, attempt: int, rand: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based) before the next.

        Exponential doubles from ``initial_delay_s``, both kinds are capped at ``max_delay_s``,
        and jitter draws uniformly from [0, delay] ("full jitter") so that many steps failing
        together do not retry in lockstep.
        """
        if attempt < 1:
            raise ValueError(f"attempt must be >= 1, got {attempt}")
        if self.backoff == "fixed":
            delay = self.initial_delay_s
        else:
            # Cap the exponent: 2**1000 is a float overflow and far above any sane max_delay_s.
            delay = self.initial_delay_s * (2.0 ** min(attempt - 1, 64))
        delay = min(delay, self.max_delay_s)
        if self.jitter:
            delay = (rand or random).uniform(0.0, delay)
        return float(delay)

    def should_retry(self, attempt: int) -> bool:
        """True when failed attempt ``attempt`` (1-based) leaves attempts to spare."""
        return attempt < self.max_attempts

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_attempts": self.max_attempts,
            "backoff": self.backoff,
            "initial_delay_s": self.initial_delay_s,
            "max_delay_s": self.max_delay_s,
            "jitter": self.jitter,
        }


DEFAULT_RETRY = RetryPolicy()


@dataclass(frozen=True)
class CompensationSpec:
    """The step that undoes a completed step when the saga unwinds."""

    type: str
    config: dict = field(default_factory=dict)
    group: str | None = None

    def __hash__(self) -> int:  # config is a dict
        return hash(("compensate", self.type, self.group))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "config": _copy(self.config)}
        if self.group is not None:
            out["group"] = self.group
        return out


@dataclass(frozen=True)
class Node:
    """One node: a step (``type``), a blueprint to expand, or a catalog template."""

    id: str
    type: str | None = None
    blueprint: str | None = None
    template: str | None = None
    config: dict = field(default_factory=dict)
    group: str | None = None
    replicas: int = 1
    retry: RetryPolicy = DEFAULT_RETRY
    timeout_s: float | None = None
    compensate: CompensationSpec | None = None
    params: dict = field(default_factory=dict)
    description: str = ""
    # A cancel may terminate a running attempt of this step (SIGTERM to its process) instead of
    # letting it finish: for steps whose half-done work is safe to abandon.
    interruptible: bool = False

    def __hash__(self) -> int:  # config is a dict; ids are unique within a graph
        return hash(("node", self.id, self.kind, getattr(self, self.kind)))

    @property
    def kind(self) -> str:
        """``"type"``, ``"blueprint"`` or ``"template"``."""
        if self.blueprint is not None:
            return "blueprint"
        if self.template is not None:
            return "template"
        return "type"

    @property
    def blueprint_name(self) -> str | None:
        return self.blueprint.rsplit("@", 1)[0] if self.blueprint else None

    @property
    def blueprint_version(self) -> int | None:
        return int(self.blueprint.rsplit("@", 1)[1]) if self.blueprint else None

    def to_dict(self) -> dict[str, Any]:
        """Document form; fields at their default are left out, as an author would write it."""
        out: dict[str, Any] = {"id": self.id, self.kind: getattr(self, self.kind)}
        if self.config:
            out["config"] = _copy(self.config)
        if self.group is not None:
            out["group"] = self.group
        if self.replicas != 1:
            out["replicas"] = self.replicas
        if self.retry != DEFAULT_RETRY:
            out["retry"] = {
                k: v for k, v in self.retry.to_dict().items() if getattr(DEFAULT_RETRY, k) != v
            }
        if self.timeout_s is not None:
            out["timeout_s"] = self.timeout_s
        if self.compensate is not None:
            out["compensate"] = self.compensate.to_dict()
        if self.params:
            out["params"] = _copy(self.params)
        if self.description:
            out["description"] = self.description
        if self.interruptible:
            out["interruptible"] = True
        return out


@dataclass(frozen=True)
class Edge:
    """A dependency ``source -> target``; ``branch`` is set only on edges leaving a condition.

    ``source`` and ``target`` are node ids. An end at a blueprint instance may name one of its
    ports (``from: "harvest:out"``): the node id is then ``harvest`` and the port ``out``.
    """

    source: str
    target: str
    delivery: str = "local"
    branch: str | None = None
    source_port: str | None = None
    target_port: str | None = None

    @property
    def source_end(self) -> str:
        """The ``from`` end as written: ``id`` or ``id:port``."""
        return endpoint(self.source, self.source_port)

    @property
    def target_end(self) -> str:
        """The ``to`` end as written: ``id`` or ``id:port``."""
        return endpoint(self.target, self.target_port)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"from": self.source_end, "to": self.target_end}
        if self.delivery != "local":
            out["delivery"] = self.delivery
        if self.branch is not None:
            out["branch"] = self.branch
        return out


def split_endpoint(end: str) -> tuple[str, str | None]:
    """``"harvest:out"`` -> ``("harvest", "out")``; ``"load"`` -> ``("load", None)``."""
    node_id, sep, port = end.partition(":")
    return node_id, (port if sep else None)


def endpoint(node_id: str, port: str | None = None) -> str:
    """The inverse of ``split_endpoint``."""
    return node_id if port is None else f"{node_id}:{port}"


@dataclass(frozen=True)
class Graph:
    """An immutable, structurally valid graph; build it with ``parse_graph``."""

    params: dict
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    _index: dict = field(init=False, repr=False, compare=False)
    _succ: dict = field(init=False, repr=False, compare=False)
    _pred: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index = {n.id: i for i, n in enumerate(self.nodes)}
        succ: dict[str, list[str]] = {n.id: [] for n in self.nodes}
        pred: dict[str, list[str]] = {n.id: [] for n in self.nodes}
        for e in self.edges:
            if e.source in succ and e.target in pred:
                if e.target not in succ[e.source]:
                    succ[e.source].append(e.target)
                if e.source not in pred[e.target]:
                    pred[e.target].append(e.source)
        object.__setattr__(self, "_index", index)
        object.__setattr__(self, "_succ", {k: tuple(v) for k, v in succ.items()})
        object.__setattr__(self, "_pred", {k: tuple(v) for k, v in pred.items()})

    def __hash__(self) -> int:  # params and configs are dicts
        return hash((self.nodes, self.edges))

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._index

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    def node(self, node_id: str) -> Node:
        try:
            return self.nodes[self._index[node_id]]
        except KeyError:
            raise NodeNotFound(f"unknown node {node_id!r}; known nodes: {', '.join(self._index)}")

    def node_ids(self) -> tuple[str, ...]:
        return tuple(n.id for n in self.nodes)

    def successors(self, node_id: str) -> tuple[str, ...]:
        self.node(node_id)
        return self._succ[node_id]

    def predecessors(self, node_id: str) -> tuple[str, ...]:
        self.node(node_id)
        return self._pred[node_id]

    def out_edges(self, node_id: str) -> tuple[Edge, ...]:
        self.node(node_id)
        return tuple(e for e in self.edges if e.source == node_id)

    def in_edges(self, node_id: str) -> tuple[Edge, ...]:
        self.node(node_id)
        return tuple(e for e in self.edges if e.target == node_id)

    def sources(self) -> tuple[str, ...]:
        """Nodes with no predecessors, in document order."""
        return tuple(n.id for n in self.nodes if not self._pred[n.id])

    def sinks(self) -> tuple[str, ...]:
        """Nodes with no successors, in document order."""
        return tuple(n.id for n in self.nodes if not self._succ[n.id])

    def topological_order(self) -> tuple[str, ...]:
        """Every node after its predecessors; ties broken by document order so it is stable."""
        return tuple(n for gen in self.generations() for n in gen)

    def generations(self) -> tuple[tuple[str, ...], ...]:
        """Layers of nodes whose predecessors are all in earlier layers (networkx's
        ``topological_generations``), each in document order. Raises ``CycleError``."""
        sorter = graphlib.TopologicalSorter({n.id: self._pred[n.id] for n in self.nodes})
        try:
            sorter.prepare()
        except graphlib.CycleError as exc:
            raise CycleError(list(exc.args[1])) from None
        out: list[tuple[str, ...]] = []
        while sorter.is_active():
            layer = tuple(sorted(sorter.get_ready(), key=self._index.__getitem__))
            out.append(layer)
            sorter.done(*layer)
        return tuple(out)

    def to_dict(self) -> dict[str, Any]:
        return {
            "params": _copy(self.params),
            "nodes": [n.to_dict() for n in self.nodes],
            "edges": [e.to_dict() for e in self.edges],
        }


# --------------------------------------------------------------------------- cycles


def find_cycle(node_ids, pairs) -> list[str] | None:
    """One cycle as ``[a, b, ..., a]`` (along the edges) or None, by ``graphlib``. Self-loops count;
    pairs naming unknown nodes are ignored."""
    known = list(dict.fromkeys(node_ids))
    present = set(known)
    sorter = graphlib.TopologicalSorter({node: () for node in known})
    for a, b in pairs:
        if a in present and b in present:
            sorter.add(b, a)
    try:
        sorter.prepare()
    except graphlib.CycleError as exc:
        return list(exc.args[1])
    return None


def parse_graph(doc: Any, *, expanded: bool = False) -> Graph:
    """Build a ``Graph`` or raise ``GraphError`` (``CycleError`` if a cycle is among the issues)
    carrying every structural problem found, each with its path.

    ``expanded=True`` accepts the ``alias/id`` node ids that blueprint expansion produces.
    """
    from pipelines.structure import parse_structure

    graph, issues, cycle = parse_structure(doc, expanded=expanded)
    if issues:
        issues = E.sort_issues(issues)
        if cycle:
            raise CycleError(cycle, issues)
        raise GraphError(issues)
    assert graph is not None
    return graph
