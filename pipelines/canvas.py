"""Compile an execution graph into a canvas plan: plain, JSON-safe data shaped like Celery's canvas.

The compiler knows nothing of Celery; one function in ``workers`` turns the plan into signatures
(``Chain`` -> ``chain``, ``Chord`` -> ``chord(group(header), body)``, a task -> ``.si()``).

Mapping (series-parallel graphs map exactly: no task waits for anything it does not depend on)::

    a -> b -> c                 Chain(a, b, c)

       +-> b -+
    a -+      +-> d             Chain(a, Chord(header=(b, c), body=d))
       +-> c -+

    a -+
       +-> c                    Chord(header=(a, b), body=c)
    b -+

       +-> b
    a -+                        Chain(a, Chord(header=(b, c), body=Barrier("end")))
       +-> c

    x (replicas: 3)             Chord(header=(x#0/3, x#1/3, x#2/3), body=Merge(x))
                                (a map node's items, known at run time: `pipelines.engine.fanout`)

    a -> b -> c  (fused)        Steps(a, b, c)        see `fuse_steps`

       +-> b1 -+
    a -+  ...  +-> j (packed)   Chain(a, Chord(header=(Steps(b1..b7), ..., Steps(b94..b100)), body=j))
       +-> b100+                see `pack_headers`

How: the graph's reachability order is split recursively. Nodes that fall apart into unrelated
groups are a *parallel* composition (a chord header); nodes that fall into blocks where every
node of one block precedes every node of the next are a *series* composition (a chain). A parallel
block followed by more work becomes ``Chord(header=branches, body=<the rest>)``; at the very end
the body is ``Barrier("end")``; inside a branch it is ``Barrier("join-<n>")``. Transitive edges
(a->b->c plus a->c) are harmless: only reachability matters.

Shape guarantees for the ``workers`` converter: a Chain has >= 2 items and never a Chain item; a
Chord has >= 2 header items; a header item or body may be a task, a Chain or a Chord (a replicated
node is a Chord even inside a header). Work after a fork/join lives in the chord's body, so k
fork/joins in a row nest k chords deep. After `fuse_steps` a task may also be a ``StepsTask``
(kind "steps" in the plan's dict form): several nodes of a chain run in order by one task; after
`pack_headers` a header part may be one too, holding unrelated sibling nodes.

Fallback (strategy "layered"): a block that is neither series nor parallel holds an "N" (W shape,
crossed diamonds) that chain/chord cannot express without duplicating tasks. That block alone is
run in topological layers, a chain of chords; series/parallel structure around it is kept::

    a -> c                      layer 0: a, b           Chord(header=(a, b),
    a -> d      (N shape)       layer 1: c, d                 body=Chord(header=(c, d),
    b -> d                                                               body=Barrier("end")))

A node waits for the whole previous layer of its block, never less than its predecessors, so every
edge holds. The cost: in the N above, c also waits for b; a node of a long branch inside the block
waits for the slowest node of each earlier layer, and the block's sub-chains lose their own pace.
Celery cannot express arbitrary DAGs without a scheduler of its own; this trades parallelism inside
the irreducible block for plain canvases.
"""

from __future__ import annotations

import graphlib
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Union

from pipelines.graph import find_cycle

__all__ = [
    "Barrier", "CanvasNode", "CanvasPlan", "Chain", "Chord", "MergeTask", "StepTask", "StepsTask",
    "compile_canvas", "fuse_steps", "iter_tasks", "pack_headers", "plan_from_dict",
]


@dataclass(frozen=True)
class CanvasNode:
    """One job of the execution graph, as the compiler needs it."""

    id: str
    replicas: int = 1
    group: str | None = None


@dataclass(frozen=True)
class StepTask:
    """Run shard ``shard`` of ``shards`` of node ``node`` (shards == 1: the node itself)."""

    node: str
    shard: int = 0
    shards: int = 1
    group: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "step", "node": self.node, "shard": self.shard, "shards": self.shards,
                "group": self.group}


@dataclass(frozen=True)
class StepsTask:
    """Run single-shard nodes ``nodes`` one after another in one task (a fused run of a chain,
    like Temporal's local activities): what ``Chain(StepTask(n) for n in nodes)`` would do,
    without a broker round trip between them. See `fuse_steps`."""

    nodes: tuple[str, ...]
    group: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "steps", "nodes": list(self.nodes), "group": self.group}


@dataclass(frozen=True)
class MergeTask:
    """Join the ``shards`` shards of a replicated node; the node is complete when this ran."""

    node: str
    shards: int
    group: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "merge", "node": self.node, "shards": self.shards, "group": self.group}


@dataclass(frozen=True)
class Barrier:
    """A no-op join, used only where a chord needs a body and no real node is there."""

    label: str

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "barrier", "label": self.label}


@dataclass(frozen=True)
class Chain:
    """Items run one after another."""

    items: tuple[PlanItem, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "chain", "items": [item.to_dict() for item in self.items]}


@dataclass(frozen=True)
class Chord:
    """Header items run in parallel; the body runs after all of them completed."""

    header: tuple[PlanItem, ...]
    body: PlanItem

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "chord", "header": [item.to_dict() for item in self.header],
                "body": self.body.to_dict()}


PlanItem = Union[StepTask, StepsTask, MergeTask, Barrier, Chain, Chord]
Task = Union[StepTask, StepsTask, MergeTask, Barrier]
Strategy = Literal["series-parallel", "layered"]


@dataclass(frozen=True)
class CanvasPlan:
    """The compiled tree; ``task_count`` counts every task in it (steps, merges, barriers)."""

    root: PlanItem
    strategy: Strategy
    task_count: int

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "plan", "strategy": self.strategy, "task_count": self.task_count,
                "root": self.root.to_dict()}


def plan_from_dict(d: Mapping[str, Any]) -> Any:
    """Rebuild a plan item (or a whole ``CanvasPlan``, kind "plan") from its ``to_dict()`` form."""
    try:
        kind = d["kind"]
        if kind == "step":
            return StepTask(d["node"], d["shard"], d["shards"], d.get("group"))
        if kind == "steps":
            if not d["nodes"] or not all(isinstance(node, str) for node in d["nodes"]):
                raise ValueError(f"malformed canvas plan item {dict(d)!r}: nodes must be node ids")
            return StepsTask(tuple(d["nodes"]), d.get("group"))
        if kind == "merge":
            return MergeTask(d["node"], d["shards"], d.get("group"))
        if kind == "barrier":
            return Barrier(d["label"])
        if kind == "chain":
            return Chain(tuple(plan_from_dict(item) for item in d["items"]))
        if kind == "chord":
            return Chord(tuple(plan_from_dict(item) for item in d["header"]),
                         plan_from_dict(d["body"]))
        if kind == "plan":
            return CanvasPlan(plan_from_dict(d["root"]), d["strategy"], d["task_count"])
    except (KeyError, TypeError) as exc:
        raise ValueError(f"malformed canvas plan item {dict(d)!r}: missing {exc}") from exc
    raise ValueError(f"unknown canvas plan kind {kind!r}; expected step, steps, merge, barrier, "
                     "chain, chord or plan")


def compile_canvas(nodes: Sequence[CanvasNode], edges: Sequence[tuple[str, str]]) -> CanvasPlan:
    """Compile a DAG of jobs into a canvas plan; raise ``ValueError`` on bad input."""
    ids, succ = _validate(nodes, edges)
    compiler = _Compiler(nodes, ids, succ)
    root = compiler.emit(compiler.decompose((1 << len(ids)) - 1), final=True)
    strategy: Strategy = "layered" if compiler.layered else "series-parallel"
    return CanvasPlan(root, strategy, sum(1 for _ in iter_tasks(root)))


def fuse_steps(plan: CanvasPlan, fusible: Collection[str]) -> CanvasPlan:
    """The plan with every run of two or more consecutive chain items that are single-shard steps
    of ``fusible`` nodes on one group replaced by one ``StepsTask`` (in the same order).

    Only a chain's consecutive items are fused: each starts after the previous one completed
    anyway, so running them in one task keeps every edge and adds no wait. Chord header parts,
    bodies, merges and barriers stay as they are (their joins are what the canvas needs Celery
    for; `pack_headers` packs the parts of a wide header). Which nodes may be fused is the caller's rule (the engine: side-effect-free steps
    without a time limit of their own); expanding each ``StepsTask`` back into a chain of its
    steps gives the unfused plan again.
    """
    fusible = frozenset(fusible)
    root = _fuse(plan.root, fusible)
    return CanvasPlan(root, plan.strategy, sum(1 for _ in iter_tasks(root)))


def _fuse(item: PlanItem, fusible: frozenset[str]) -> PlanItem:
    if isinstance(item, Chord):
        return Chord(tuple(_fuse(sub, fusible) for sub in item.header), _fuse(item.body, fusible))
    if not isinstance(item, Chain):
        return item
    items: list[PlanItem] = []
    run: list[StepTask] = []

    def flush() -> None:
        if len(run) > 1:
            items.append(StepsTask(tuple(task.node for task in run), run[0].group))
        else:
            items.extend(run)
        run.clear()

    for sub in item.items:
        if isinstance(sub, StepTask) and sub.shards == 1 and sub.node in fusible:
            if run and run[0].group != sub.group:
                flush()
            run.append(sub)
            continue
        flush()
        items.append(_fuse(sub, fusible))
    flush()
    return items[0] if len(items) == 1 else Chain(tuple(items))


def pack_headers(plan: CanvasPlan, packable: Collection[str], *, parts: int) -> CanvasPlan:
    """The plan with every chord header that has more than ``parts`` packable parts on one group
    packed into ``parts`` ``StepsTask``s of that group, each running a contiguous slice of them
    in order (slices as even as possible, header order kept).

    A packable part is a single-shard step of a ``packable`` node, or a ``StepsTask`` (already
    fused, so made of such nodes). The parts of one header are unrelated (none depends on
    another) and all start once the chord starts, so running some of them one after another in
    one task keeps every edge; what it trades is parallelism beyond ``parts`` tasks, for one broker
    round trip (publish, deliver, chord count, ack) per part instead of one per node: on a wide
    fan-out of cheap side-effect-free steps that round trip is most of the work. Other parts
    (replicated nodes, chains with other steps, nested chords) and bodies stay as they are; a
    header keeps at least ``parts`` >= 2 parts, so it stays a chord.
    """
    if not isinstance(parts, int) or parts < 2:
        raise ValueError(f"parts={parts!r}: a packed chord header keeps at least 2 parts; use an int >= 2")
    root = _pack(plan.root, frozenset(packable), parts)
    return CanvasPlan(root, plan.strategy, sum(1 for _ in iter_tasks(root)))


def _pack(item: PlanItem, packable: frozenset[str], parts: int) -> PlanItem:
    if isinstance(item, Chain):
        return Chain(tuple(_pack(sub, packable, parts) for sub in item.items))
    if not isinstance(item, Chord):
        return item
    header = [_pack(sub, packable, parts) for sub in item.header]
    by_group: dict[str | None, list[int]] = {}
    for index, sub in enumerate(header):
        if isinstance(sub, StepsTask) or (isinstance(sub, StepTask) and sub.shards == 1 and sub.node in packable):
            by_group.setdefault(sub.group, []).append(index)
    packed: dict[int, StepsTask] = {}  # first index of each slice -> its task
    dropped: set[int] = set()
    for group, indices in by_group.items():
        if len(indices) <= parts:
            continue
        size, extra = divmod(len(indices), parts)
        start = 0
        for k in range(parts):
            end = start + size + (1 if k < extra else 0)
            chunk = indices[start:end]
            if len(chunk) > 1:  # a slice of one part stays that part
                packed[chunk[0]] = StepsTask(tuple(node for i in chunk for node in _nodes_of(header[i])), group)
                dropped.update(chunk[1:])
            start = end
    new_header = tuple(packed.get(i, sub) for i, sub in enumerate(header) if i not in dropped)
    return Chord(new_header, _pack(item.body, packable, parts))


def _nodes_of(task: StepTask | StepsTask) -> tuple[str, ...]:
    return task.nodes if isinstance(task, StepsTask) else (task.node,)


def iter_tasks(plan: CanvasPlan | PlanItem) -> Iterator[Task]:
    """Yield every task of the plan, depth first (chain items in order, chord header then body)."""
    item = plan.root if isinstance(plan, CanvasPlan) else plan
    if isinstance(item, Chain):
        for sub in item.items:
            yield from iter_tasks(sub)
    elif isinstance(item, Chord):
        for sub in item.header:
            yield from iter_tasks(sub)
        yield from iter_tasks(item.body)
    else:
        yield item


def _validate(nodes: Sequence[CanvasNode], edges: Sequence[tuple[str, str]]
              ) -> tuple[list[str], list[set[int]]]:
    """Check the input; return node ids sorted and successor sets by index."""
    if not nodes:
        raise ValueError("cannot compile an empty graph; add at least one node")
    ids = sorted(node.id for node in nodes)
    index = {node_id: i for i, node_id in enumerate(ids)}
    if len(index) != len(ids):
        dupes = sorted({x for x in ids if ids.count(x) > 1})
        raise ValueError(f"duplicate node ids {dupes}; node ids must be unique")
    for node in nodes:
        if not isinstance(node.replicas, int) or node.replicas < 1:
            raise ValueError(f"node {node.id!r} has replicas={node.replicas!r}; use an int >= 1")
    succ: list[set[int]] = [set() for _ in ids]
    for src, dst in edges:
        for end in (src, dst):
            if end not in index:
                raise ValueError(f"edge {src!r} -> {dst!r} names unknown node {end!r}; "
                                 "add the node or remove the edge")
        succ[index[src]].add(index[dst])
    cycle = find_cycle(ids, [(ids[i], ids[t]) for i, targets in enumerate(succ) for t in sorted(targets)])
    if cycle:
        raise ValueError(f"graph has a cycle {' -> '.join(cycle)}; remove one of its edges")
    return ids, succ


def _topological_order(succ: list[set[int]]) -> list[int]:
    """The node indices, each after its predecessors (``graphlib``); the graph is acyclic here."""
    sorter = graphlib.TopologicalSorter({i: () for i in range(len(succ))})
    for i, targets in enumerate(succ):
        for t in targets:
            sorter.add(t, i)
    return list(sorter.static_order())


def _bits(mask: int) -> Iterator[int]:
    while mask:
        low = mask & -mask
        yield low.bit_length() - 1
        mask ^= low


# A series is a list of parts run one after another; a part is a node index, or a parallel
# block: a list of branches, each branch itself a series.
Series = list[Any]


class _Compiler:
    """Holds the reachability order (bitsets by node index) during one compilation."""

    def __init__(self, nodes: Sequence[CanvasNode], ids: list[str], succ: list[set[int]]):
        self.ids = ids
        self.by_id = {node.id: node for node in nodes}
        self.layered = False
        self.joins = 0
        self.related = self._closure(succ)  # i -> bitset of nodes before or after i

    def _closure(self, succ: list[set[int]]) -> list[int]:
        desc = [0] * len(succ)
        for i in reversed(_topological_order(succ)):
            for t in succ[i]:
                desc[i] |= (1 << t) | desc[t]
        anc = [0] * len(succ)
        for i, below in enumerate(desc):
            for t in _bits(below):
                anc[t] |= 1 << i
        self.anc = anc
        return [d | a for d, a in zip(desc, anc)]

    def _components(self, mask: int, comparable: bool) -> list[int]:
        """Connected components of ``mask`` under (in)comparability, ordered by lowest index."""
        comps = []
        remaining = mask
        while remaining:
            comp = frontier = remaining & -remaining
            while frontier:
                reach = 0
                for i in _bits(frontier):
                    rel = self.related[i] if comparable else ~(self.related[i] | (1 << i))
                    reach |= rel
                frontier = reach & remaining & ~comp
                comp |= frontier
            comps.append(comp)
            remaining &= ~comp
        return comps

    def decompose(self, mask: int) -> Series:
        if mask & (mask - 1) == 0:
            return [mask.bit_length() - 1]
        parallel = self._components(mask, comparable=True)
        if len(parallel) > 1:
            return [[self.decompose(comp) for comp in parallel]]
        blocks = self._components(mask, comparable=False)
        if len(blocks) > 1:  # every node of an earlier block precedes every node of a later one
            blocks.sort(key=lambda b: (self.anc[(b & -b).bit_length() - 1] & mask).bit_count())
            return [part for block in blocks for part in self.decompose(block)]
        self.layered = True
        return [layer[0] if len(layer) == 1 else [[i] for i in layer]
                for layer in self._layers(mask)]

    def _layers(self, mask: int) -> list[list[int]]:
        """Topological layers of ``mask``: a node's layer is its longest chain of ancestors."""
        depth: dict[int, int] = {}
        for i in sorted(_bits(mask), key=lambda i: (self.anc[i] & mask).bit_count()):
            depth[i] = 1 + max((depth[a] for a in _bits(self.anc[i] & mask)), default=-1)
        layers: list[list[int]] = [[] for _ in range(max(depth.values()) + 1)]
        for i in sorted(depth):
            layers[depth[i]].append(i)
        return layers

    def emit(self, series: Series, final: bool) -> PlanItem:
        items: list[PlanItem] = []
        for k, part in enumerate(series):
            if isinstance(part, int):
                items.append(self._node(part))
                continue
            header = tuple(self.emit(branch, False) for branch in part)
            rest = series[k + 1:]
            items.append(Chord(header, self.emit(rest, final) if rest else self._barrier(final)))
            break
        return items[0] if len(items) == 1 else Chain(tuple(items))

    def _barrier(self, final: bool) -> Barrier:
        if final:
            return Barrier("end")
        self.joins += 1
        return Barrier(f"join-{self.joins}")

    def _node(self, i: int) -> PlanItem:
        node = self.by_id[self.ids[i]]
        if node.replicas == 1:
            return StepTask(node.id, 0, 1, node.group)
        shards = tuple(StepTask(node.id, k, node.replicas, node.group)
                       for k in range(node.replicas))
        return Chord(shards, MergeTask(node.id, node.replicas, node.group))
