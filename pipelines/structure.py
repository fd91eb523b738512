"""Structural checks of a graph document: shapes, types, ids, edges, branches and cycles.

``parse_structure`` never raises on bad input; it returns every issue it can find so that
``graph.parse_graph`` (which raises) and ``validation.validate_graph`` (which reports) share
one definition of a well-formed document.
"""

from __future__ import annotations

from typing import Any

from pipelines import errors as E
from pipelines.errors import Issue
from pipelines.graph import (
    BACKOFFS,
    BLUEPRINT_REF_RE,
    BRANCHES,
    COMPENSATE_FIELDS,
    CONDITION_TYPE,
    DEFAULT_RETRY,
    DELIVERIES,
    EDGE_FIELDS,
    EXPANDED_ID_RE,
    ID_RE,
    NODE_FIELDS,
    NODE_KINDS,
    PORT_RE,
    RETRY_FIELDS,
    TEMPLATE_REF_RE,
    CompensationSpec,
    Edge,
    Graph,
    Node,
    RetryPolicy,
    _copy,
    json_type,
    find_cycle,
    is_int,
    is_number,
    split_endpoint,
)
from pipelines.triggers import trigger_issues

MAX_CYCLES_REPORTED = 10


def parse_structure(doc: Any, *, expanded: bool = False):
    """Return ``(graph or None, issues, first cycle or None)``; graph is None if any issue."""
    issues: list[Issue] = []
    if not isinstance(doc, dict):
        issues.append(Issue("", f"graph document must be a mapping with 'nodes' and 'edges', "
                                f"got {json_type(doc)}", E.INVALID_DOCUMENT))
        return None, issues, None

    params = doc.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        issues.append(_bad("params", "params", "a mapping", params))
        params = {}

    raw_nodes = doc.get("nodes")
    if raw_nodes is None:
        raw_nodes = []
    if not isinstance(raw_nodes, list):
        issues.append(_bad("nodes", "nodes", "a list", raw_nodes))
        raw_nodes = []
    if not raw_nodes and "nodes" not in [i.path for i in issues]:
        issues.append(Issue("nodes", "graph has no nodes; add at least one node", E.EMPTY_GRAPH))

    nodes: list[Node] = []
    kinds: dict[str, tuple[str, str | None]] = {}  # id -> (kind, type) of the first node with it
    first_index: dict[str, int] = {}
    for i, raw in enumerate(raw_nodes):
        node = _parse_node(raw, f"nodes[{i}]", issues, expanded)
        nid = raw.get("id") if isinstance(raw, dict) else None
        if isinstance(nid, str):
            if nid in first_index:
                issues.append(Issue(
                    f"nodes[{i}].id",
                    f"duplicate node id {nid!r} (first used by nodes[{first_index[nid]}]); "
                    "ids must be unique, rename one",
                    E.DUPLICATE_ID,
                ))
            else:
                first_index[nid] = i
                kind = next((k for k in NODE_KINDS if raw.get(k) is not None), "type")
                kinds[nid] = (kind, raw.get("type") if isinstance(raw.get("type"), str) else None)
        if node is not None:
            nodes.append(node)

    raw_edges = doc.get("edges")
    if raw_edges is None:
        raw_edges = []
    if not isinstance(raw_edges, list):
        issues.append(_bad("edges", "edges", "a list", raw_edges))
        raw_edges = []
    edges: list[Edge] = []
    edge_paths: dict[tuple[str, str], str] = {}
    seen_edges: dict[tuple, int] = {}
    for i, raw in enumerate(raw_edges):
        edge = _parse_edge(raw, f"edges[{i}]", issues, kinds)
        if edge is None:
            continue
        key = (edge.source_end, edge.target_end, edge.branch)
        if key in seen_edges:
            issues.append(Issue(
                f"edges[{i}]",
                f"duplicate edge {edge.source_end!r} -> {edge.target_end!r} "
                f"(same as edges[{seen_edges[key]}]); "
                "remove one",
                E.DUPLICATE_EDGE,
            ))
            continue
        seen_edges[key] = i
        edge_paths.setdefault((edge.source, edge.target), f"edges[{i}]")
        edges.append(edge)

    _check_conditions(raw_edges, kinds, issues)
    issues.extend(trigger_issues(doc))  # the `schedules` and `on` keys: pipelines.triggers
    first_cycle = _report_cycles(list(kinds), [(e.source, e.target) for e in edges
                                               if e.source != e.target], edge_paths, issues)
    if issues:
        return None, issues, first_cycle
    return Graph(params=_copy(params), nodes=tuple(nodes), edges=tuple(edges)), issues, None


def _bad(path: str, what: str, expected: str, got: Any, code: str = E.INVALID_FIELD) -> Issue:
    return Issue(path, f"{what} must be {expected}, got {json_type(got)} {_short(got)}", code)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _parse_node(raw: Any, p: str, issues: list[Issue], expanded: bool) -> Node | None:
    if not isinstance(raw, dict):
        issues.append(_bad(p, "a node", "a mapping", raw))
        return None
    start = len(issues)
    id_re = EXPANDED_ID_RE if expanded else ID_RE
    nid = raw.get("id")
    if nid is None:
        issues.append(Issue(f"{p}.id", "node has no id; add an id of [a-z0-9_-], 1-64 characters",
                            E.INVALID_ID))
    elif not isinstance(nid, str) or not id_re.match(nid):
        issues.append(Issue(f"{p}.id", f"invalid node id {_short(nid)}; use 1-64 characters of "
                                       "a-z, 0-9, '_' and '-'", E.INVALID_ID))
    label = f"node {nid!r}" if isinstance(nid, str) else "node"

    for key in sorted(set(raw) - NODE_FIELDS):
        issues.append(Issue(f"{p}.{key}", f"unknown field {key!r} on {label}; known fields: "
                                          f"{', '.join(sorted(NODE_FIELDS))}", E.INVALID_FIELD))

    present = [k for k in NODE_KINDS if raw.get(k) is not None]
    if len(present) != 1:
        has = f"has {' and '.join(present)}" if present else "has none"
        issues.append(Issue(p, f"{label} needs exactly one of type, blueprint or template; {has}",
                            E.INVALID_FIELD))
    kind = present[0] if len(present) == 1 else None
    step_type = raw.get("type")
    if step_type is not None and (not isinstance(step_type, str) or not step_type):
        issues.append(_bad(f"{p}.type", "type", "a non-empty string naming a step type", step_type))
    blueprint = raw.get("blueprint")
    if blueprint is not None and (not isinstance(blueprint, str)
                                  or not BLUEPRINT_REF_RE.match(blueprint)):
        issues.append(Issue(f"{p}.blueprint", f"invalid blueprint reference {_short(blueprint)}; "
                            "write 'name@<version>', e.g. 'fanout-ingest@2'", E.INVALID_REFERENCE))
    template = raw.get("template")
    if template is not None and (not isinstance(template, str)
                                 or not TEMPLATE_REF_RE.match(template)):
        issues.append(Issue(f"{p}.template", f"invalid template reference {_short(template)}; "
                            "write the template's name, e.g. 'http-get'", E.INVALID_REFERENCE))

    config = _mapping(raw, "config", p, issues)
    params = _mapping(raw, "params", p, issues)
    if params and kind == "type":
        issues.append(Issue(f"{p}.params", f"params are for blueprint and template nodes; "
                            f"put the settings of step {nid!r} in config", E.INVALID_FIELD))
    group = raw.get("group")
    if group is not None and (not isinstance(group, str) or not group):
        issues.append(_bad(f"{p}.group", "group", "a worker group name (non-empty string)", group))
    replicas = raw.get("replicas", 1)
    if not is_int(replicas) or replicas < 1:
        issues.append(_bad(f"{p}.replicas", "replicas", "an integer >= 1", replicas))
    timeout_s = raw.get("timeout_s")
    if timeout_s is not None and (not is_number(timeout_s) or timeout_s <= 0):
        issues.append(_bad(f"{p}.timeout_s", "timeout_s", "a number of seconds > 0 or null",
                           timeout_s))
    interruptible = raw.get("interruptible", False)
    if not isinstance(interruptible, bool):
        issues.append(_bad(f"{p}.interruptible", "interruptible", "true or false", interruptible))
    description = raw.get("description", "")
    if description is None:
        description = ""
    if not isinstance(description, str):
        issues.append(_bad(f"{p}.description", "description", "a string", description))
    retry = _parse_retry(raw.get("retry"), f"{p}.retry", issues)
    compensate = _parse_compensate(raw.get("compensate"), f"{p}.compensate", issues)

    if len(issues) != start:
        return None
    return Node(id=nid, type=step_type, blueprint=blueprint, template=template,
                config=_copy(config), group=group, replicas=replicas, retry=retry,
                timeout_s=timeout_s, compensate=compensate, params=_copy(params),
                description=description, interruptible=interruptible)


def _mapping(raw: dict, key: str, p: str, issues: list[Issue]) -> dict:
    value = raw.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        issues.append(_bad(f"{p}.{key}", key, "a mapping", value))
        return {}
    return value


def _parse_retry(raw: Any, p: str, issues: list[Issue]) -> RetryPolicy:
    if raw is None:
        return DEFAULT_RETRY
    if not isinstance(raw, dict):
        issues.append(_bad(p, "retry", "a mapping", raw))
        return DEFAULT_RETRY
    for key in sorted(set(raw) - RETRY_FIELDS):
        issues.append(Issue(f"{p}.{key}", f"unknown retry field {key!r}; known fields: "
                                          f"{', '.join(sorted(RETRY_FIELDS))}", E.INVALID_FIELD))
    d = DEFAULT_RETRY
    max_attempts = raw.get("max_attempts", d.max_attempts)
    backoff = raw.get("backoff", d.backoff)
    initial = raw.get("initial_delay_s", d.initial_delay_s)
    maximum = raw.get("max_delay_s", d.max_delay_s)
    jitter = raw.get("jitter", d.jitter)
    ok = True
    if not is_int(max_attempts) or max_attempts < 1:
        issues.append(_bad(f"{p}.max_attempts", "max_attempts", "an integer >= 1", max_attempts))
        ok = False
    if backoff not in BACKOFFS:
        issues.append(_bad(f"{p}.backoff", "backoff", "'exponential' or 'fixed'", backoff))
        ok = False
    for key, value in (("initial_delay_s", initial), ("max_delay_s", maximum)):
        if not is_number(value) or value < 0:
            issues.append(_bad(f"{p}.{key}", key, "a number of seconds >= 0", value))
            ok = False
    if not isinstance(jitter, bool):
        issues.append(_bad(f"{p}.jitter", "jitter", "true or false", jitter))
        ok = False
    if not ok:
        return DEFAULT_RETRY
    return RetryPolicy(max_attempts=max_attempts, backoff=backoff, initial_delay_s=initial,
                       max_delay_s=maximum, jitter=jitter)


def _parse_compensate(raw: Any, p: str, issues: list[Issue]) -> CompensationSpec | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        issues.append(_bad(p, "compensate", "a mapping with type and config, or null", raw))
        return None
    start = len(issues)
    for key in sorted(set(raw) - COMPENSATE_FIELDS):
        issues.append(Issue(f"{p}.{key}", f"unknown compensate field {key!r}; known fields: "
                                          f"{', '.join(sorted(COMPENSATE_FIELDS))}",
                            E.INVALID_FIELD))
    step_type = raw.get("type")
    if not isinstance(step_type, str) or not step_type:
        issues.append(_bad(f"{p}.type", "compensate.type", "a step type name", step_type))
    config = _mapping(raw, "config", p, issues)
    group = raw.get("group")
    if group is not None and (not isinstance(group, str) or not group):
        issues.append(_bad(f"{p}.group", "compensate.group", "a worker group name", group))
    if len(issues) != start:
        return None
    return CompensationSpec(type=step_type, config=_copy(config), group=group)


def _parse_edge(raw: Any, p: str, issues: list[Issue], kinds: dict) -> Edge | None:
    if not isinstance(raw, dict):
        issues.append(_bad(p, "an edge", "a mapping with 'from' and 'to'", raw))
        return None
    start = len(issues)
    for key in sorted(set(raw) - EDGE_FIELDS):
        issues.append(Issue(f"{p}.{key}", f"unknown edge field {key!r}; known fields: "
                                          f"{', '.join(sorted(EDGE_FIELDS))}", E.INVALID_FIELD))
    ends, ports = {}, {}
    for key in ("from", "to"):
        value = raw.get(key)
        if not isinstance(value, str) or not value:
            issues.append(_bad(f"{p}.{key}", f"edge '{key}'", "a node id", value))
            ends[key], ports[key] = value, None
        else:
            ends[key], ports[key] = _parse_end(value, f"{p}.{key}", key, kinds, issues)
    source, target = ends["from"], ends["to"]
    if isinstance(source, str) and source and source == target:
        issues.append(Issue(p, f"edge from {source!r} to itself; a node cannot depend on itself, "
                               "remove the edge", E.SELF_LOOP))
    delivery = raw.get("delivery", "local")
    if delivery is None:
        delivery = "local"
    if delivery not in DELIVERIES:
        issues.append(_bad(f"{p}.delivery", "delivery", "'local' or 'landing'", delivery))
    branch = raw.get("branch")
    if isinstance(branch, bool):  # YAML reads an unquoted true as a boolean; mean the same thing
        branch = "true" if branch else "false"
    if branch is not None and branch not in BRANCHES:
        issues.append(_bad(f"{p}.branch", "branch", "'true' or 'false'", branch,
                           E.INVALID_BRANCH))
    elif branch is not None and source in kinds:
        kind, step_type = kinds[source]
        if kind == "blueprint" or (kind == "type" and step_type != CONDITION_TYPE):
            what = f"a {step_type!r} step" if kind == "type" else "a blueprint"
            issues.append(Issue(f"{p}.branch", f"branch is only for edges leaving a condition "
                                f"node; {source!r} is {what}, remove the branch",
                                E.INVALID_BRANCH))
    if len(issues) != start:
        return None
    return Edge(source=source, target=target, delivery=delivery, branch=branch,
                source_port=ports["from"], target_port=ports["to"])


def _parse_end(value: str, p: str, word: str, kinds: dict, issues: list[Issue]):
    """``(node id, port or None)`` of one edge end; reports unknown nodes and misplaced ports.

    Only a blueprint instance has ports (``harvest:in``); whether the blueprint declares that
    port is the planner's question, since only it has the blueprint.
    """
    node_id, port = split_endpoint(value)
    if node_id not in kinds:
        hint = f" (in {value!r})" if port is not None else ""
        issues.append(Issue(p, f"edge {word} unknown node {node_id!r}{hint}; add the node or "
                               "remove the edge", E.DANGLING_EDGE))
    elif port is not None and kinds[node_id][0] != "blueprint":
        issues.append(Issue(p, f"edge {word} {value!r}: node {node_id!r} is not a blueprint "
                               f"instance and has no ports; write {node_id!r} without "
                               f"':{port}'", E.UNKNOWN_PORT))
    elif port is not None and not PORT_RE.match(port):
        issues.append(Issue(p, f"edge {word} {value!r} has an invalid port name {port!r}; write "
                               f"'{node_id}:<port>' with 1-64 letters, digits, '_' or '-', or "
                               f"{node_id!r} for its only port", E.UNKNOWN_PORT))
    return node_id, port


def _check_conditions(raw_edges: list, kinds: dict, issues: list[Issue]) -> None:
    # A branch-less edge out of a condition would run whichever way the condition goes,
    # which is never what the author meant.
    for i, raw in enumerate(raw_edges):
        if not isinstance(raw, dict):
            continue
        source = raw.get("from")
        if not isinstance(source, str) or kinds.get(source, (None, None))[1] != CONDITION_TYPE:
            continue
        if kinds[source][0] == "type" and raw.get("branch") is None:
            issues.append(Issue(f"edges[{i}].branch", f"edge leaving condition {source!r} needs "
                                "branch: 'true' or 'false'", E.INVALID_BRANCH))


def _report_cycles(node_ids, pairs, edge_paths, issues) -> list[str] | None:
    # Report each independent cycle: find one, drop its first edge, look again.
    first = None
    remaining = list(pairs)
    for _ in range(MAX_CYCLES_REPORTED):
        cycle = find_cycle(node_ids, remaining)
        if not cycle:
            break
        first = first or cycle
        a, b = cycle[0], cycle[1]
        issues.append(Issue(
            edge_paths.get((a, b), "nodes"),
            f"cycle {' -> '.join(repr(n) for n in cycle)}; remove one of these edges",
            E.CYCLE,
        ))
        remaining = [pair for pair in remaining if pair != (a, b)]
    return first
