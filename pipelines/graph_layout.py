"""Where each node of a workflow graph is drawn: a layered left-to-right layout. Pure.

Layers are the graph's topological generations (``graphlib``, as ``Graph.generations``): a node
sits one column right of its latest predecessor's generation, so every edge points rightwards.
Inside a column nodes start in document order and are then sorted once by the mean row of their
predecessors (one barycenter pass: fewer crossings, still stable). Coordinates are in SVG user
units; edges are cubic Bezier paths from a node's right side to the next node's left side.

Documents are read as far as they can be (like ``pipelines.diff``): a draft that does not
validate still draws. Nodes caught in a cycle go to one last column, marked ``in_cycle``.

``layout_diff`` draws two versions on one picture: the new graph plus the nodes and edges the new
version removed, each node and edge with its ``state`` (``added`` / ``changed`` / ``removed`` /
``same``), from ``pipelines.diff.diff_graphs``.
"""

from __future__ import annotations

import graphlib
from dataclasses import dataclass
from typing import Any

from pipelines.diff import GraphDiff
from pipelines.graph import split_endpoint

NODE_WIDTH = 168
NODE_HEIGHT = 54
COLUMN_GAP = 64
ROW_GAP = 26
MARGIN = 16
STACK_OFFSET = 4  # px between the shadow cards that mark a replicated node

SAME, ADDED, CHANGED, REMOVED = "same", "added", "changed", "removed"


@dataclass(frozen=True)
class NodeBox:
    id: str
    x: int
    y: int
    layer: int
    kind: str  # the step type, "blueprint:<name>" or "template:<name>"
    group: str | None
    group_index: int  # position of `group` in `Layout.groups`, for its colour; -1 when unplaced
    replicas: int
    compensate: str | None  # the compensation's step type, when the node has one
    state: str = SAME
    map_step: str | None = None  # a map node's child step type: it fans out, one shard per item
    in_cycle: bool = False
    changed_fields: tuple[str, ...] = ()
    width: int = NODE_WIDTH
    height: int = NODE_HEIGHT

    @property
    def stack(self) -> tuple[int, ...]:
        """Offsets of the shadow cards drawn behind a replicated or map node (at most two)."""
        cards = 3 if self.map_step is not None else min(self.replicas, 3)
        return tuple(STACK_OFFSET * i for i in range(cards - 1, 0, -1))


@dataclass(frozen=True)
class EdgePath:
    source: str
    target: str
    d: str  # the SVG path
    label: str = ""  # a condition's branch, or a non-local delivery
    state: str = SAME
    label_x: int = 0  # where the label is written: the curve's middle
    label_y: int = 0


@dataclass(frozen=True)
class Layout:
    width: int
    height: int
    nodes: tuple[NodeBox, ...]
    edges: tuple[EdgePath, ...]
    groups: tuple[str, ...]  # worker groups in first-seen order: the legend

    def node(self, node_id: str) -> NodeBox:
        return next(n for n in self.nodes if n.id == node_id)


def layout_graph(doc: Any) -> Layout:
    """The layout of one graph document (a dict as stored in a version or a draft)."""
    nodes = _nodes(doc)
    edges = _edges(doc, set(nodes))
    return _place(nodes, edges, states={}, edge_states={}, changed={})


def layout_diff(old_doc: Any, new_doc: Any, diff: GraphDiff) -> Layout:
    """The new graph with the removed nodes and edges of the old one added back, all marked."""
    old_nodes, new_nodes = _nodes(old_doc), _nodes(new_doc)
    nodes = {**new_nodes, **{nid: raw for nid, raw in old_nodes.items() if nid not in new_nodes}}
    new_edges = _edges(new_doc, set(new_nodes))
    old_edges = _edges(old_doc, set(old_nodes))
    edges = {**new_edges, **{ends: raw for ends, raw in old_edges.items() if ends not in new_edges}}
    states = {nid: ADDED for nid in diff.nodes_added}
    states.update({nid: REMOVED for nid in diff.nodes_removed})
    states.update({c.id: CHANGED for c in diff.nodes_changed})
    edge_states = {(e.source, e.target): ADDED for e in diff.edges_added}
    edge_states.update({(e.source, e.target): REMOVED for e in diff.edges_removed})
    edge_states.update({(e.source, e.target): CHANGED for e in diff.edges_changed})
    changed = {c.id: c.fields for c in diff.nodes_changed}
    return _place(nodes, edges, states=states, edge_states=edge_states, changed=changed)


# --------------------------------------------------------------------------- reading documents


def _nodes(doc: Any) -> dict[str, dict]:
    out: dict[str, dict] = {}
    raw_nodes = doc.get("nodes") if isinstance(doc, dict) else None
    for raw in raw_nodes if isinstance(raw_nodes, list) else []:
        if isinstance(raw, dict) and isinstance(raw.get("id"), str) and raw["id"] not in out:
            out[raw["id"]] = raw
    return out


def _edges(doc: Any, known: set[str]) -> dict[tuple[str, str], dict]:
    out: dict[tuple[str, str], dict] = {}
    raw_edges = doc.get("edges") if isinstance(doc, dict) else None
    for raw in raw_edges if isinstance(raw_edges, list) else []:
        if not isinstance(raw, dict):
            continue
        source, target = _node_of(raw.get("from")), _node_of(raw.get("to"))
        if source in known and target in known and source != target:
            out.setdefault((source, target), raw)
    return out


def _node_of(end: Any) -> str | None:
    """``"node:port"`` names the node ``node`` (ports are drawn as plain edges)."""
    return split_endpoint(end)[0] if isinstance(end, str) else None


def _kind(raw: dict) -> str:
    for key in ("type", "blueprint", "template"):
        if isinstance(raw.get(key), str):
            return raw[key] if key == "type" else f"{key}:{raw[key]}"
    return "?"


def _replicas(raw: dict) -> int:
    value = raw.get("replicas", 1)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 1


def _map_step(raw: dict) -> str | None:
    """The child step type of a map node ("?" when unreadable), None for any other node."""
    if raw.get("type") != "map":
        return None
    step = (raw.get("config") or {}).get("step") if isinstance(raw.get("config"), dict) else None
    return step.get("type") if isinstance(step, dict) and isinstance(step.get("type"), str) else "?"


def _compensation(raw: dict) -> str | None:
    spec = raw.get("compensate")
    if isinstance(spec, dict):
        return spec.get("type") if isinstance(spec.get("type"), str) else "?"
    return None


def _edge_label(raw: dict) -> str:
    branch = raw.get("branch")
    if isinstance(branch, bool):
        branch = "true" if branch else "false"
    if branch not in (None, ""):
        return str(branch)
    delivery = raw.get("delivery")
    return str(delivery) if delivery not in (None, "", "local") else ""


# --------------------------------------------------------------------------- placing


def _layers(nodes: dict[str, dict], edges: dict[tuple[str, str], dict]) -> tuple[list[list[str]], set[str]]:
    """Topological generations in document order, and the nodes a cycle kept out of them."""
    order = {nid: i for i, nid in enumerate(nodes)}
    preds: dict[str, set[str]] = {nid: set() for nid in nodes}
    for source, target in edges:
        preds[target].add(source)
    sorter = graphlib.TopologicalSorter(preds)
    placed: set[str] = set()
    layers: list[list[str]] = []
    try:
        sorter.prepare()
    except graphlib.CycleError:  # lay out what precedes the cycle; the rest go to one last column
        return _layers_around_cycle(nodes, preds, order)
    while sorter.is_active():
        layer = sorted(sorter.get_ready(), key=order.__getitem__)
        layers.append(layer)
        placed.update(layer)
        sorter.done(*layer)
    return layers, set()


def _layers_around_cycle(nodes, preds, order) -> tuple[list[list[str]], set[str]]:
    remaining = dict(preds)
    layers: list[list[str]] = []
    done: set[str] = set()
    while True:
        ready = sorted((n for n, ps in remaining.items() if ps <= done), key=order.__getitem__)
        if not ready:
            break
        layers.append(ready)
        done.update(ready)
        for n in ready:
            del remaining[n]
    stuck = sorted(remaining, key=order.__getitem__)
    if stuck:
        layers.append(stuck)
    return layers, set(stuck)


def _order_by_barycenter(layers: list[list[str]], edges) -> list[list[str]]:
    preds: dict[str, list[str]] = {}
    for source, target in edges:
        preds.setdefault(target, []).append(source)
    row: dict[str, int] = {}
    out = []
    for layer in layers:
        def weight(nid: str, index: int) -> float:
            rows = [row[p] for p in preds.get(nid, ()) if p in row]
            return sum(rows) / len(rows) if rows else index

        ordered = [nid for _, _, nid in sorted((weight(n, i), i, n) for i, n in enumerate(layer))]
        row.update({nid: i for i, nid in enumerate(ordered)})
        out.append(ordered)
    return out


def _place(nodes, edges, *, states, edge_states, changed) -> Layout:
    layers, stuck = _layers(nodes, edges)
    layers = _order_by_barycenter(layers, edges)
    tallest = max((len(layer) for layer in layers), default=0)
    column_height = tallest * NODE_HEIGHT + max(tallest - 1, 0) * ROW_GAP
    groups: list[str] = []
    boxes: dict[str, NodeBox] = {}
    for column, layer in enumerate(layers):
        height = len(layer) * NODE_HEIGHT + (len(layer) - 1) * ROW_GAP
        top = MARGIN + (column_height - height) // 2  # centre short columns
        for index, nid in enumerate(layer):
            raw = nodes[nid]
            group = raw.get("group") if isinstance(raw.get("group"), str) else None
            if group is not None and group not in groups:
                groups.append(group)
            boxes[nid] = NodeBox(
                id=nid,
                x=MARGIN + column * (NODE_WIDTH + COLUMN_GAP),
                y=top + index * (NODE_HEIGHT + ROW_GAP),
                layer=column,
                kind=_kind(raw),
                group=group,
                group_index=groups.index(group) if group is not None else -1,
                replicas=_replicas(raw),
                compensate=_compensation(raw),
                map_step=_map_step(raw),
                state=states.get(nid, SAME),
                in_cycle=nid in stuck,
                changed_fields=tuple(changed.get(nid, ())),
            )
    paths = tuple(
        EdgePath(source, target, _curve(boxes[source], boxes[target]), _edge_label(raw),
                 edge_states.get((source, target), SAME), *_middle(boxes[source], boxes[target]))
        for (source, target), raw in edges.items()
    )
    width = 2 * MARGIN + len(layers) * NODE_WIDTH + max(len(layers) - 1, 0) * COLUMN_GAP + STACK_OFFSET * 2
    height = 2 * MARGIN + column_height + STACK_OFFSET * 2
    ordered = tuple(boxes[nid] for layer in layers for nid in layer)
    return Layout(width=width, height=height, nodes=ordered, edges=paths, groups=tuple(groups))


def _middle(a: NodeBox, b: NodeBox) -> tuple[int, int]:
    return (a.x + a.width + b.x) // 2, (a.y + b.y + a.height) // 2 - 4


def _curve(a: NodeBox, b: NodeBox) -> str:
    x1, y1 = a.x + a.width, a.y + a.height // 2
    x2, y2 = b.x, b.y + b.height // 2
    if b.layer <= a.layer:  # an edge inside a cycle's column: loop around the right side
        x2 = b.x + b.width
        bend = x1 + COLUMN_GAP // 2
        return f"M{x1},{y1} C{bend},{y1} {bend},{y2} {x2},{y2}"
    mid = (x1 + x2) // 2
    return f"M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}"
