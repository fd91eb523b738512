"""Checks of catalog documents before they are stored: blueprint bodies and job-template schemas.

Every check returns `[{"path", "message", "code"}]` (the API's `errors` list) instead of raising,
so a publish shows every problem at once. Paths are relative to the document
(`nodes[2].config.url`, `inputs[0].to[1]`); problems found while dry-running the expansion keep
the planner's nested form (`nodes[1](other@2).nodes[0].config`).
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pipelines.blueprints import expand_graph, param_fits
from pipelines.documents import json_type
from pipelines.validation import validate_graph
from pipelines.graph import BLUEPRINT_REF_RE
from pipelines.value_types import VALUE_TYPES

BLUEPRINT_KEYS = frozenset({"params", "inputs", "outputs", "nodes", "edges", "description"})
PARAM_SPEC_KEYS = frozenset({"default", "required", "type", "description"})
PORT_KEYS = {"inputs": frozenset({"name", "to", "description"}), "outputs": frozenset({"name", "from", "description"})}
PARAM_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
PORT_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_TEMPLATE = re.compile(r"\{\{(.*?)\}\}", re.S)
_PARAM_EXPR = re.compile(r"""^\s*\.params(?:\.([A-Za-z_][A-Za-z0-9_]*)|\[\s*"([^"]+)"\s*\])\s*$""")

Errors = list[dict[str, str]]


def _err(path: str, message: str, code: str) -> dict[str, str]:
    return {"path": path, "message": message, "code": code}


# -- params -------------------------------------------------------------------------------------


def param_schema_errors(schema: Any, path: str) -> Errors:
    """`{name: {type?, required?, default?, description?}}`: names, keys and default types."""
    if schema is None:
        return []
    if not isinstance(schema, Mapping):
        return [_err(path, f"{path} must be a mapping of param name to spec, got {json_type(schema)}", "invalid_field")]
    errors: Errors = []
    for name, spec in schema.items():
        where = f"{path}.{name}"
        if not isinstance(name, str) or not PARAM_NAME_RE.match(name):
            errors.append(_err(where, f"invalid param name {name!r}; use a letter or '_' then letters, digits, '_' or '-'", "invalid_param"))
            continue
        if spec is None:
            continue
        if not isinstance(spec, Mapping):
            errors.append(_err(where, f"param {name!r} must be a mapping like {{default: ..., required: false}}, got {json_type(spec)}", "invalid_param"))
            continue
        for key in sorted(set(spec) - PARAM_SPEC_KEYS):
            errors.append(_err(f"{where}.{key}", f"unknown key {key!r} on param {name!r}; known: {', '.join(sorted(PARAM_SPEC_KEYS))}", "invalid_field"))
        if "required" in spec and not isinstance(spec["required"], bool):
            errors.append(_err(f"{where}.required", f"required must be true or false, got {json_type(spec['required'])}", "invalid_field"))
        type_name = spec.get("type")
        # The step config field types: a param's value lands in a step's config.
        if type_name is not None and type_name not in VALUE_TYPES:
            errors.append(_err(f"{where}.type", f"unknown param type {type_name!r}; use one of {', '.join(VALUE_TYPES)}", "invalid_field"))
        elif type_name is not None and spec.get("default") is not None and not param_fits(type_name, spec["default"]):
            errors.append(_err(f"{where}.default", f"default of param {name!r} must be {type_name}, got {json_type(spec['default'])}", "invalid_field"))
    return errors


def param_reference_errors(value: Any, declared: Mapping, path: str) -> Errors:
    """`{{ .params.<name> }}` templates in `value` whose name is not declared."""
    errors: Errors = []
    if isinstance(value, str):
        for match in _TEMPLATE.finditer(value):
            ref = _PARAM_EXPR.match(match.group(1))
            name = ref and (ref.group(1) or ref.group(2))
            if name and name not in declared:
                known = ", ".join(sorted(declared)) or "none"
                errors.append(_err(path, f"template uses undeclared param {name!r}; declare it under params (declared: {known})", "unknown_param"))
    elif isinstance(value, Mapping):
        for key, item in value.items():
            errors += param_reference_errors(item, declared, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            errors += param_reference_errors(item, declared, f"{path}[{index}]")
    return errors


# -- job templates ------------------------------------------------------------------------------


def job_template_errors(*, defaults: Any, param_schema: Any) -> Errors:
    """Shapes of a template's defaults and param schema, and params its defaults use."""
    errors: Errors = []
    if not isinstance(defaults, Mapping):
        errors.append(_err("defaults", f"defaults must be a mapping of config keys, got {json_type(defaults)}", "invalid_field"))
    errors += param_schema_errors(param_schema, "param_schema")
    if not errors and param_schema:
        # With no schema, a node's params pass through unchecked; with one, defaults must use declared names.
        errors += param_reference_errors(defaults, param_schema, "defaults")
    return errors


# -- blueprints ---------------------------------------------------------------------------------


def blueprint_errors(
    document: Any,
    *,
    name: str,
    number: int,
    blueprints: Mapping[tuple[str, int], Mapping],
    templates: Mapping[str, Mapping],
) -> Errors:
    """Every problem of `document` as version `number` of blueprint `name`, or [] if publishable.

    `blueprints` and `templates` are the company's catalog (what nested `blueprint:` and
    `template:` nodes may refer to), as the planner sees it.
    """
    if not isinstance(document, Mapping):
        return [_err("", f"a blueprint is a mapping with params, inputs, outputs, nodes and edges, got {json_type(document)}", "invalid_document")]
    errors: Errors = []
    for key in sorted(set(document) - BLUEPRINT_KEYS):
        errors.append(_err(str(key), f"unknown key {key!r}; a blueprint has {', '.join(sorted(BLUEPRINT_KEYS))}", "invalid_field"))
    errors += param_schema_errors(document.get("params"), "params")
    nodes = document.get("nodes")
    node_kinds = _node_kinds(nodes)
    errors += _graph_errors(document)
    for side in ("inputs", "outputs"):
        errors += _port_errors(document.get(side), side, node_kinds)
    errors += _self_reference_errors(nodes, name)
    if errors:
        return errors
    declared = document.get("params") or {}
    for index, node in enumerate(nodes):
        for key in ("config", "params"):
            errors += param_reference_errors(node.get(key), declared, f"nodes[{index}].{key}")
        compensate = node.get("compensate")
        if isinstance(compensate, Mapping):
            errors += param_reference_errors(compensate.get("config"), declared, f"nodes[{index}].compensate.config")
    if errors:
        return errors
    return _expansion_errors(document, name=name, number=number, blueprints=blueprints, templates=templates)


def _node_kinds(nodes: Any) -> dict[str, str]:
    """Node id -> "blueprint" or "job", for the nodes that have a string id."""
    kinds: dict[str, str] = {}
    for node in nodes if isinstance(nodes, list) else []:
        if isinstance(node, Mapping) and isinstance(node.get("id"), str):
            kinds.setdefault(node["id"], "blueprint" if node.get("blueprint") is not None else "job")
    return kinds


def _graph_errors(document: Mapping) -> Errors:
    """The nodes/edges part, checked as a graph. Port suffixes (`alias:port`) are stripped from
    edge ends first: the graph checker knows nodes, the port check below knows ports."""
    edges = document.get("edges")
    if isinstance(edges, list):
        edges = [_strip_ports(edge) for edge in edges]
    params = document.get("params")
    graph = {
        "params": {k: (v or {}).get("default") for k, v in params.items() if isinstance(v, Mapping) or v is None}
        if isinstance(params, Mapping)
        else {},
        "nodes": document.get("nodes"),
        "edges": edges,
    }
    issues = validate_graph(graph).issues
    return [issue.to_dict() if hasattr(issue, "to_dict") else dict(issue) for issue in issues]


def _strip_ports(edge: Any) -> Any:
    if not isinstance(edge, Mapping):
        return edge
    out = dict(edge)
    for key in ("from", "to"):
        if isinstance(out.get(key), str) and ":" in out[key]:
            out[key] = out[key].split(":", 1)[0]
    return out


def _port_errors(ports: Any, side: str, node_kinds: Mapping[str, str]) -> Errors:
    if ports is None:
        return []
    if not isinstance(ports, list):
        return [_err(side, f"{side} must be a list of ports, got {json_type(ports)}", "invalid_field")]
    errors: Errors = []
    seen: dict[str, int] = {}
    end_key = "to" if side == "inputs" else "from"
    for index, port in enumerate(ports):
        where = f"{side}[{index}]"
        if not isinstance(port, Mapping):
            errors.append(_err(where, f"a port is a mapping {{name, {end_key}}}, got {json_type(port)}", "invalid_field"))
            continue
        for key in sorted(set(port) - PORT_KEYS[side]):
            errors.append(_err(f"{where}.{key}", f"unknown key {key!r} on a port; known: {', '.join(sorted(PORT_KEYS[side]))}", "invalid_field"))
        port_name = port.get("name")
        if not isinstance(port_name, str) or not PORT_NAME_RE.match(port_name):
            errors.append(_err(f"{where}.name", f"port name must be 1-64 letters, digits, '_' or '-', got {port_name!r}", "invalid_port"))
        elif port_name in seen:
            errors.append(_err(f"{where}.name", f"duplicate port {port_name!r} (first at {side}[{seen[port_name]}]); rename one", "duplicate_port"))
        else:
            seen[port_name] = index
        ends = port.get(end_key)
        if side == "inputs":
            if isinstance(ends, str):
                ends = [ends]
            if not isinstance(ends, list) or not ends:
                errors.append(_err(f"{where}.to", "an input port needs 'to': the inner node ids it feeds", "unbound_port"))
                continue
            for k, end in enumerate(ends):
                errors += _endpoint_errors(end, f"{where}.to[{k}]", node_kinds)
        else:
            if not isinstance(ends, str) or not ends:
                errors.append(_err(f"{where}.from", "an output port needs 'from': the inner node id it exposes", "unbound_port"))
                continue
            errors += _endpoint_errors(ends, f"{where}.from", node_kinds)
    return errors


def _endpoint_errors(end: Any, path: str, node_kinds: Mapping[str, str]) -> Errors:
    if not isinstance(end, str) or not end:
        return [_err(path, f"port end must be an inner node id, got {json_type(end)}", "invalid_field")]
    local, _, port = end.partition(":")
    if local not in node_kinds:
        known = ", ".join(sorted(node_kinds)) or "none"
        return [_err(path, f"port refers to unknown inner node {local!r}; inner nodes: {known}", "dangling_port")]
    if port and node_kinds[local] != "blueprint":
        return [_err(path, f"inner node {local!r} is a step, not a blueprint instance; it has no port {port!r}", "unknown_port")]
    return []


def _self_reference_errors(nodes: Any, name: str) -> Errors:
    errors: Errors = []
    for index, node in enumerate(nodes if isinstance(nodes, list) else []):
        ref = node.get("blueprint") if isinstance(node, Mapping) else None
        match = BLUEPRINT_REF_RE.match(ref) if isinstance(ref, str) else None
        if match and match.group(1) == name:
            errors.append(_err(f"nodes[{index}].blueprint", f"blueprint {name!r} includes itself ({ref}); a blueprint cannot contain itself", "recursive_blueprint"))
    return errors


def _expansion_errors(document: Mapping, *, name: str, number: int, blueprints, templates) -> Errors:
    """Dry-run the planner's expansion of one instance of the candidate: unknown nested
    blueprints or templates, ports of nested instances, param use the planner rejects."""
    ref = f"{name}@{number}"
    params = {
        param: None
        for param, spec in (document.get("params") or {}).items()
        if not (isinstance(spec, Mapping) and "default" in spec)
    }
    graph = {"nodes": [{"id": "candidate", "blueprint": ref, "params": params}], "edges": []}
    catalog = {**blueprints, (name, number): document}
    expansion = expand_graph(graph, blueprints=catalog, templates=templates)
    prefix = f"nodes[0]({ref})."
    return [
        _err(issue.path[len(prefix):], issue.message, issue.code)
        for issue in expansion.issues
        if issue.path.startswith(prefix)
    ]
