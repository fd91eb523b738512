"""What changed between two graph documents, compared by stable node id. Pure.

Defaults are filled in before comparing, so writing ``replicas: 1`` where it was implicit is
not a change; a changed field is reported by its dotted path (``config.url``,
``retry.max_attempts``). Documents that do not validate still diff as far as they can be read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipelines.graph import DEFAULT_RETRY, Graph

_NODE_DEFAULTS: dict[str, Any] = {
    "config": {},
    "group": None,
    "replicas": 1,
    "retry": DEFAULT_RETRY.to_dict(),
    "timeout_s": None,
    "compensate": None,
    "params": {},
    "description": "",
    "interruptible": False,
}
_EDGE_DEFAULTS: dict[str, Any] = {"delivery": "local", "branch": None}


@dataclass(frozen=True)
class NodeChange:
    id: str
    fields: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "fields": list(self.fields)}


@dataclass(frozen=True)
class EdgeRef:
    source: str
    target: str

    def to_dict(self) -> dict[str, str]:
        return {"from": self.source, "to": self.target}


@dataclass(frozen=True)
class EdgeChange:
    """An edge present in both graphs whose ``delivery`` or ``branch`` changed."""

    source: str
    target: str
    fields: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"from": self.source, "to": self.target, "fields": list(self.fields)}


@dataclass(frozen=True)
class GraphDiff:
    nodes_added: tuple[str, ...] = ()
    nodes_removed: tuple[str, ...] = ()
    nodes_changed: tuple[NodeChange, ...] = ()
    edges_added: tuple[EdgeRef, ...] = ()
    edges_removed: tuple[EdgeRef, ...] = ()
    params_changed: tuple[str, ...] = ()
    edges_changed: tuple[EdgeChange, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not (self.nodes_added or self.nodes_removed or self.nodes_changed
                    or self.edges_added or self.edges_removed or self.edges_changed
                    or self.params_changed)

    def summary(self) -> str:
        if self.is_empty:
            return "no changes"
        text = (f"{_count(len(self.nodes_added), 'node')} added, "
                f"{len(self.nodes_changed)} changed, {len(self.nodes_removed)} removed; "
                f"{_count(len(self.edges_added), 'edge')} added")
        if self.edges_removed:
            text += f", {len(self.edges_removed)} removed"
        if self.edges_changed:
            text += f", {len(self.edges_changed)} changed"
        if self.params_changed:
            text += f"; {_count(len(self.params_changed), 'param')} changed"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "nodes_added": list(self.nodes_added),
            "nodes_removed": list(self.nodes_removed),
            "nodes_changed": [c.to_dict() for c in self.nodes_changed],
            "edges_added": [e.to_dict() for e in self.edges_added],
            "edges_removed": [e.to_dict() for e in self.edges_removed],
            "edges_changed": [e.to_dict() for e in self.edges_changed],
            "params_changed": list(self.params_changed),
            "is_empty": self.is_empty,
            "summary": self.summary(),
        }


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def diff_graphs(old_doc: Any, new_doc: Any) -> GraphDiff:
    """Compare two graph documents (dicts or ``Graph``s); neither is modified."""
    old, new = _as_doc(old_doc), _as_doc(new_doc)
    old_nodes, new_nodes = _nodes_by_id(old), _nodes_by_id(new)
    changed = []
    for nid in sorted(old_nodes.keys() & new_nodes.keys()):
        fields = _changed_paths(old_nodes[nid], new_nodes[nid], "")
        if fields:
            changed.append(NodeChange(nid, tuple(sorted(fields))))

    old_edges, new_edges = _edges_by_ends(old), _edges_by_ends(new)
    edges_changed = []
    for ends in sorted(old_edges.keys() & new_edges.keys()):
        fields = _changed_paths(old_edges[ends], new_edges[ends], "")
        if fields:
            edges_changed.append(EdgeChange(ends[0], ends[1], tuple(sorted(fields))))

    old_params, new_params = _mapping(old.get("params")), _mapping(new.get("params"))
    params_changed = sorted(
        k for k in old_params.keys() | new_params.keys()
        if k not in old_params or k not in new_params or old_params[k] != new_params[k]
    )
    return GraphDiff(
        nodes_added=tuple(sorted(new_nodes.keys() - old_nodes.keys())),
        nodes_removed=tuple(sorted(old_nodes.keys() - new_nodes.keys())),
        nodes_changed=tuple(changed),
        edges_added=tuple(EdgeRef(*e) for e in sorted(new_edges.keys() - old_edges.keys())),
        edges_removed=tuple(EdgeRef(*e) for e in sorted(old_edges.keys() - new_edges.keys())),
        params_changed=tuple(params_changed),
        edges_changed=tuple(edges_changed),
    )


def _as_doc(doc: Any) -> dict:
    if isinstance(doc, Graph):
        return doc.to_dict()
    return doc if isinstance(doc, dict) else {}


def _mapping(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _nodes_by_id(doc: dict) -> dict[str, dict]:
    out: dict[str, dict] = {}
    nodes = doc.get("nodes")
    for raw in nodes if isinstance(nodes, list) else []:
        if isinstance(raw, dict) and isinstance(raw.get("id"), str) and raw["id"] not in out:
            out[raw["id"]] = _normalize_node(raw)
    return out


def _normalize_node(raw: dict) -> dict:
    node = {k: v for k, v in raw.items() if k != "id" and v is not None}
    for key, default in _NODE_DEFAULTS.items():
        if key == "retry" and isinstance(node.get("retry"), dict):
            node["retry"] = {**default, **{k: v for k, v in node["retry"].items()
                                           if v is not None}}
        elif key not in node:
            node[key] = default
    return node


def _edges_by_ends(doc: dict) -> dict[tuple[str, str], dict]:
    out: dict[tuple[str, str], dict] = {}
    edges = doc.get("edges")
    for raw in edges if isinstance(edges, list) else []:
        if not isinstance(raw, dict):
            continue
        source, target = raw.get("from"), raw.get("to")
        if isinstance(source, str) and isinstance(target, str) and (source, target) not in out:
            edge = {**_EDGE_DEFAULTS, **{k: v for k, v in raw.items()
                                         if k not in ("from", "to") and v is not None}}
            if isinstance(edge["branch"], bool):  # YAML true and "true" mean the same branch
                edge["branch"] = "true" if edge["branch"] else "false"
            out[(source, target)] = edge
    return out


def _changed_paths(old: Any, new: Any, prefix: str) -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        paths: list[str] = []
        for key in sorted(old.keys() | new.keys(), key=str):
            sub = f"{prefix}.{key}" if prefix else str(key)
            if key not in old or key not in new:
                paths.append(sub)
            else:
                paths.extend(_changed_paths(old[key], new[key], sub))
        return paths
    if _same(old, new):
        return []
    return [prefix]


def _same(a: Any, b: Any) -> bool:
    # 1 == 1.0 == True in Python; in a graph document those are different values.
    if type(a) is not type(b) and not (
        isinstance(a, (int, float)) and isinstance(b, (int, float))
        and not isinstance(a, bool) and not isinstance(b, bool)
    ):
        return False
    return a == b
