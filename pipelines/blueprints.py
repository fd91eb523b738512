"""Blueprint and job-template expansion: graph nodes -> concrete job nodes with stable ids.

A graph node is one of three kinds:

* ``{id, type, config, ...}``           a plain step; its job id is its id.
* ``{id, template: "name", params, config, ...}``  a catalog item: the JobTemplate's
  ``{type, config, param_schema}`` gives the type and default config; the node's config is
  deep-merged over the defaults.
* ``{id, blueprint: "name@<int>", params, ...}``   an *instance* (``id`` is its alias) of a
  reusable sub-graph ``{params, inputs, outputs, nodes, edges}``. Its inner nodes become jobs
  ``<alias>/<inner id>``; nested blueprints give ``<alias>/<inner alias>/<id>``.

Ids depend only on ids, never on config, so editing a blueprint's config never moves a job.

Ports. Edges into an instance name an input port: ``to: "harvest:in"``, or ``to: "harvest"``
when the blueprint declares exactly one input. ``inputs[].to`` lists the inner targets (which may
themselves be ``inner`` or ``inner:port`` of a nested instance). Edges out use ``from:
"harvest"`` / ``"harvest:out"`` the same way against ``outputs[].from``. Every input port must be
fed (``unbound_port``); an output port nobody consumes is allowed.

Params, resolved at expansion time. Blueprint params are declared ``{name: {default?,
required?, type?}}``; a param without a default is required unless ``required: false`` (then
null); a given value must fit ``type`` (``invalid_param``) unless it is a runtime template.
Inside a blueprint (and inside a JobTemplate's default config) a template whose whole expression
is ``.params.<name>`` (or ``.params["name"]``) is replaced by the param value: a string that is
exactly one such template takes the value with its JSON type; a template embedded in a longer
string is spliced as text. Any other expression mentioning ``.params`` inside a blueprint is an
error (``blueprint_param_expression``): at run time ``.params`` means the graph's params. Runtime
templates (``.steps``, ``.trigger``, ``.execution``) stay intact, except that ``.steps.<inner>`` /
``.steps["inner"]`` is rewritten to ``.steps["<alias>/<inner>"]``, and a reference to an instance
with exactly one output port is rewritten to the job behind that port (also at the top level).
Param values are written in the scope of the instance node, so they are rewritten there first.

Instance-level ``group`` and ``replicas`` apply to inner nodes that do not set their own.

Error paths nest through instances: ``nodes[3](fanout-ingest@2).nodes[1].config.url`` is the
``config.url`` of node 1 of the blueprint used by graph node 3.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pipelines.errors import DANGLING_EDGE, DUPLICATE_ID, UNKNOWN_PORT, Issue, TemplateError
from pipelines.graph import BLUEPRINT_REF_RE, _copy
from pipelines.templating import split_template
from pipelines.value_types import VALUE_TYPES, fits, json_type

BlueprintRef = tuple[str, int]

_PARAM_EXPR = re.compile(r"""^\s*\.params(?:\.([A-Za-z_][A-Za-z0-9_]*)|\[\s*"([^"]+)"\s*\])\s*$""")
_MENTIONS_PARAMS = re.compile(r"(?<![A-Za-z0-9_\]\)])\.params\b")
_STEP_REF = re.compile(r"""\.steps(?:\.([A-Za-z_][A-Za-z0-9_]*)|\[\s*"([^"]+)"\s*\])""")


def parse_ref(ref: Any) -> BlueprintRef | None:
    """``"fanout-ingest@2"`` -> ``("fanout-ingest", 2)``; None when malformed."""
    if not isinstance(ref, str):
        return None
    match = BLUEPRINT_REF_RE.match(ref)
    return (match.group(1), int(match.group(2))) if match else None


def format_ref(ref: BlueprintRef) -> str:
    return f"{ref[0]}@{ref[1]}"


@dataclass(frozen=True)
class ExpandedNode:
    """One concrete job node: resolved type/config and where each value came from."""

    job_id: str
    type: str | None
    config: dict
    path: str  # document path of the defining node, e.g. "nodes[3](fanout-ingest@2).nodes[1]"
    aliases: tuple[str, ...] = ()  # enclosing instance aliases, outermost first
    group: Any = None
    group_path: str | None = None
    replicas: Any = None
    replicas_path: str | None = None
    retry: Any = None
    timeout_s: Any = None
    compensate: Any = None
    interruptible: Any = False


@dataclass(frozen=True)
class ExpandedEdge:
    """A job-level edge ``src -> dst`` and the document path of the edge that produced it."""

    src: str
    dst: str
    delivery: str
    branch: Any
    path: str


@dataclass(frozen=True)
class Expansion:
    """The result of expanding a graph: job nodes, job edges, instance aliases, issues."""

    nodes: tuple[ExpandedNode, ...]
    edges: tuple[ExpandedEdge, ...]
    aliases: frozenset[str]
    issues: tuple[Issue, ...] = field(default=())


@dataclass
class _Instance:
    alias: str  # full job-id prefix, e.g. "harvest/inner"
    ref: str
    path: str
    inputs: dict[str, list[str]]  # port -> job ids
    outputs: dict[str, list[str]]
    bound: set[str] = field(default_factory=set)
    port_error: bool = False  # a bad port reference was reported; do not pile unbound_port on it


@dataclass
class _Scope:
    prefix: str  # "" at top level, "harvest/" inside instance harvest
    path: str  # "" at top level, "nodes[3](bp@1)."
    params: dict | None  # blueprint params (None at top level: .params stays a runtime ref)
    jobs: dict[str, str] = field(default_factory=dict)  # local id -> job id
    instances: dict[str, _Instance] = field(default_factory=dict)
    step_map: dict[str, str] = field(default_factory=dict)  # local id -> rewritten step id


def expand_graph(
    graph: Mapping,
    *,
    blueprints: Mapping[BlueprintRef, Mapping],
    templates: Mapping[str, Mapping],
) -> Expansion:
    """Expand blueprint instances and template nodes of ``graph``; never mutates inputs."""
    return _Expander(blueprints, templates).run(graph)


class _Expander:
    def __init__(self, blueprints, templates):
        self.blueprints = blueprints
        self.templates = templates
        self.nodes: list[ExpandedNode] = []
        self.edges: list[ExpandedEdge] = []
        self.aliases: set[str] = set()
        self.issues: list[Issue] = []
        self.checked: set[BlueprintRef] = set()

    def issue(self, path: str, message: str, code: str) -> None:
        self.issues.append(Issue(path=path, message=message, code=code))

    def run(self, graph: Mapping) -> Expansion:
        scope = _Scope(prefix="", path="", params=None)
        self.expand_scope(graph.get("nodes") or [], graph.get("edges") or [], scope, (), None, None)
        self.check_ports_bound(scope)
        return Expansion(tuple(self.nodes), tuple(self.edges), frozenset(self.aliases), tuple(self.issues))

    # -- scopes ---------------------------------------------------------------------------------

    def expand_scope(self, nodes, edges, scope: _Scope, stack, inherited_group, inherited_replicas):
        """Expand one level (the graph, or one blueprint instance), then its edges."""
        kinds = []
        for i, node in enumerate(nodes):
            node_id = node.get("id") if isinstance(node, Mapping) else None
            if not isinstance(node_id, str) or not node_id:
                self.issue(f"{scope.path}nodes[{i}].id", "node without an id; give it a stable id", "missing_id")
                kinds.append(None)
                continue
            if node_id in scope.step_map:
                self.issue(f"{scope.path}nodes[{i}].id", f"duplicate node id {node_id!r}; rename one", DUPLICATE_ID)
                kinds.append(None)
                continue
            kinds.append(node_id)
            if node.get("blueprint") is not None:
                scope.step_map[node_id] = self.output_job_of(node, scope.prefix + node_id, stack)
            else:
                scope.step_map[node_id] = scope.prefix + node_id
        for i, node in enumerate(nodes):
            if kinds[i] is None:
                continue
            path = f"{scope.path}nodes[{i}]"
            group = _own(node, "group", path, inherited_group)
            replicas = _own(node, "replicas", path, inherited_replicas)
            if node.get("blueprint") is not None:
                self.expand_instance(node, path, scope, stack, group, replicas)
            else:
                self.expand_job(node, path, scope, stack, group, replicas)
        for i, edge in enumerate(edges):
            self.expand_edge(edge, f"{scope.path}edges[{i}]", scope)

    def check_structure(self, doc: Mapping, prefix: str) -> None:
        """Structural checks of a blueprint's own nodes and edges, once per blueprint version.

        Dangling edges, ports and duplicate ids are left to expansion, which knows the ports.
        """
        from pipelines.structure import parse_structure

        _, issues, _ = parse_structure({"nodes": doc.get("nodes"), "edges": doc.get("edges")})
        for issue in issues:
            if issue.code not in (DANGLING_EDGE, DUPLICATE_ID, UNKNOWN_PORT):
                self.issue(prefix + issue.path, issue.message, issue.code)

    def check_ports_bound(self, scope: _Scope) -> None:
        for local, inst in scope.instances.items():
            for port in inst.inputs:
                if port not in inst.bound and not inst.port_error:
                    self.issue(
                        inst.path,
                        f"input port {port!r} of {local!r} ({inst.ref}) has no producer; "
                        f"add an edge to '{local}:{port}'",
                        "unbound_port",
                    )

    # -- nodes ----------------------------------------------------------------------------------

    def expand_job(self, node, path, scope: _Scope, stack, group, replicas):
        node_id = node["id"]
        job_id = scope.prefix + node_id
        node_type = node.get("type")
        config = self.transform(node.get("config") or {}, scope, f"{path}.config")
        if node.get("template") is not None:
            node_type, config = self.apply_template(node, path, scope, config)
        elif not isinstance(node_type, str) or not node_type:
            self.issue(f"{path}.type", f"node {node_id!r} has no type, template or blueprint; set one", "missing_type")
        compensate = node.get("compensate")
        if isinstance(compensate, Mapping):
            compensate = dict(compensate)
            compensate["config"] = self.transform(compensate.get("config") or {}, scope, f"{path}.compensate.config")
        scope.jobs[node_id] = job_id
        self.nodes.append(
            ExpandedNode(
                job_id=job_id,
                type=node_type,
                config=config,
                path=path,
                aliases=_aliases(scope.prefix),
                group=group[0],
                group_path=group[1],
                replicas=replicas[0],
                replicas_path=replicas[1],
                retry=_copy(node.get("retry")),
                timeout_s=node.get("timeout_s"),
                compensate=compensate,
                interruptible=node.get("interruptible", False),
            )
        )

    def apply_template(self, node, path, scope: _Scope, node_config):
        name = node.get("template")
        template = self.templates.get(name) if isinstance(name, str) else None
        if template is None:
            known = ", ".join(sorted(self.templates)) or "none"
            self.issue(f"{path}.template", f"unknown job template {name!r}; known: {known}", "unknown_template")
            return node.get("type"), node_config
        declared = _param_schema(template.get("param_schema"))
        given = self.transform(node.get("params") or {}, scope, f"{path}.params")
        params = self.bind_params(declared, given, path, strict=bool(declared))
        tmpl_scope = _Scope(prefix=scope.prefix, path=path + ".template.", params=params, step_map=scope.step_map)
        defaults = self.transform(template.get("config") or {}, tmpl_scope, f"{path}(template {name}).config")
        return template.get("type"), _deep_merge(defaults, node_config)

    def expand_instance(self, node, path, scope: _Scope, stack, group, replicas):
        alias = node["id"]
        raw = node.get("blueprint")
        ref = parse_ref(raw)
        if ref is None or ref not in self.blueprints:
            hint = "write name@<version>" if ref is None else "publish it or fix the name/version"
            self.issue(f"{path}.blueprint", f"unknown blueprint {raw!r}; {hint}", "unknown_blueprint")
            return
        if ref in stack:
            chain = " -> ".join(format_ref(r) for r in (*stack[stack.index(ref):], ref))
            self.issue(f"{path}.blueprint", f"blueprint includes itself: {chain}; remove the cycle", "recursive_blueprint")
            return
        doc = self.blueprints[ref]
        ref_text = format_ref(ref)
        if ref not in self.checked:
            self.checked.add(ref)
            self.check_structure(doc, f"{path}({ref_text}).")
        prefix = scope.prefix + alias + "/"
        self.aliases.add(scope.prefix + alias)
        given = self.transform(node.get("params") or {}, scope, f"{path}.params")
        params = self.bind_params(_param_schema(doc.get("params")), given, path, strict=True)
        inner = _Scope(prefix=prefix, path=f"{path}({ref_text}).", params=params)
        self.expand_scope(doc.get("nodes") or [], doc.get("edges") or [], inner, (*stack, ref), group, replicas)
        inst = _Instance(alias=scope.prefix + alias, ref=ref_text, path=path, inputs={}, outputs={})
        for j, port in enumerate(doc.get("inputs") or []):
            targets = port.get("to") or []
            targets = [targets] if isinstance(targets, str) else targets
            ids: list[str] = []
            for k, target in enumerate(targets):
                ids += self.resolve(target, "in", inner, f"{inner.path}inputs[{j}].to[{k}]")
            inst.inputs[port.get("name")] = ids
        for j, port in enumerate(doc.get("outputs") or []):
            inst.outputs[port.get("name")] = self.resolve(port.get("from"), "out", inner, f"{inner.path}outputs[{j}].from")
        self.check_ports_bound(inner)
        scope.instances[alias] = inst

    def bind_params(self, declared: dict, given: Mapping, path: str, *, strict: bool) -> dict:
        params: dict = {}
        for name, spec in declared.items():
            if name in given:
                params[name] = given[name]
                expected = spec.get("type")
                # A runtime template always fits: it is checked once rendered.
                if expected in VALUE_TYPES and not param_fits(expected, given[name], secret_ok=True) \
                        and not (isinstance(given[name], str) and "{{" in given[name]):
                    self.issue(f"{path}.params.{name}", f"param {name!r} must be {expected}, "
                               f"got {json_type(given[name])}", "invalid_param")
            elif "default" in spec:
                params[name] = spec["default"]
            else:
                if spec.get("required", True):
                    self.issue(f"{path}.params.{name}", f"missing required param {name!r}; set params.{name}",
                               "missing_param")
                params[name] = None
        for name in given:
            if name not in declared:
                if strict:
                    known = ", ".join(sorted(declared)) or "none"
                    self.issue(f"{path}.params.{name}", f"unknown param {name!r}; declared: {known}", "unknown_param")
                else:
                    params[name] = given[name]
        return params

    def output_job_of(self, node, prefix: str, stack) -> str:
        """The job behind an instance's single output port (for ``.steps.<alias>``), from docs."""
        ref = parse_ref(node.get("blueprint"))
        doc = self.blueprints.get(ref) if ref else None
        outputs = (doc or {}).get("outputs") or []
        if doc is None or ref in stack or len(outputs) != 1 or len(stack) > 32:
            return prefix
        src = outputs[0].get("from")
        if not isinstance(src, str):
            return prefix
        local = src.split(":", 1)[0]
        for inner in doc.get("nodes") or []:
            if isinstance(inner, Mapping) and inner.get("id") == local:
                if inner.get("blueprint") is not None:
                    return self.output_job_of(inner, f"{prefix}/{local}", (*stack, ref))
                return f"{prefix}/{local}"
        return prefix

    # -- edges ----------------------------------------------------------------------------------

    def expand_edge(self, edge, path, scope: _Scope) -> None:
        if not isinstance(edge, Mapping):
            self.issue(path, "edge must be an object {from, to}", "unbound_channel")
            return
        srcs = self.resolve(edge.get("from"), "out", scope, f"{path}.from")
        dsts = self.resolve(edge.get("to"), "in", scope, f"{path}.to")
        delivery = edge.get("delivery") or "local"
        for src in srcs:
            for dst in dsts:
                self.edges.append(ExpandedEdge(src, dst, delivery, edge.get("branch"), path))

    def resolve(self, endpoint, side: str, scope: _Scope, path: str) -> list[str]:
        """Job ids behind ``id`` / ``id:port`` in ``scope``; marks input ports bound."""
        role = "producer" if side == "out" else "consumer"
        if not isinstance(endpoint, str) or not endpoint:
            self.issue(path, f"channel without a {role}; set it to a node id", "unbound_channel")
            return []
        local, _, port = endpoint.partition(":")
        if local in scope.jobs:
            if port:
                self.issue(path, f"node {local!r} is not a blueprint instance and has no port {port!r}", "unknown_port")
                return []
            return [scope.jobs[local]]
        inst = scope.instances.get(local)
        if inst is None:
            if local in scope.step_map:  # a node that failed to expand: already reported
                return []
            self.issue(path, f"channel {role} {local!r} is not a node here; add the node or fix the edge", DANGLING_EDGE)
            return []
        ports = inst.inputs if side == "in" else inst.outputs
        kind = "input" if side == "in" else "output"
        if not port:
            if len(ports) != 1:
                names = ", ".join(f"{local}:{p}" for p in ports) or "none"
                self.issue(path, f"{local!r} ({inst.ref}) has {len(ports)} {kind} ports; name one of: {names}", "unknown_port")
                inst.port_error = True
                return []
            port = next(iter(ports))
        if port not in ports:
            names = ", ".join(map(str, ports)) or "none"
            self.issue(path, f"{local!r} ({inst.ref}) has no {kind} port {port!r}; ports: {names}", "unknown_port")
            inst.port_error = True
            return []
        if side == "in":
            inst.bound.add(port)
        return ports[port]

    # -- values ---------------------------------------------------------------------------------

    def transform(self, value, scope: _Scope, path: str):
        """Copy ``value`` substituting ``.params`` and rewriting ``.steps`` refs for ``scope``."""
        if isinstance(value, str):
            return self.transform_str(value, scope, path) if "{{" in value else value
        if isinstance(value, Mapping):
            return {k: self.transform(v, scope, f"{path}.{k}") for k, v in value.items()}
        if isinstance(value, list):
            return [self.transform(v, scope, f"{path}[{i}]") for i, v in enumerate(value)]
        return value

    def transform_str(self, text: str, scope: _Scope, path: str):
        try:
            parts = split_template(text)
        except TemplateError:
            return text  # unterminated: left for validation to report as invalid_jq
        if len(parts) == 1 and parts[0][0] == "expr":
            param = self.param_value(parts[0][1], scope, path)
            if param is not _NO_PARAM:
                return param
        out, changed = [], False
        for kind, chunk in parts:
            if kind == "text":
                out.append(chunk)
                continue
            param = self.param_value(chunk, scope, path)
            if param is _NO_PARAM:
                rewritten = self.rewrite_expr(chunk, scope, path)
                changed = changed or rewritten != chunk
                out.append("{{ " + rewritten + " }}")
            else:
                changed = True
                out.append(param if isinstance(param, str) else _json_text(param))
        return "".join(out) if changed else text

    def param_value(self, expr: str, scope: _Scope, path: str):
        if scope.params is None:
            return _NO_PARAM
        match = _PARAM_EXPR.match(expr)
        if not match:
            return _NO_PARAM
        name = match.group(1) or match.group(2)
        if name not in scope.params:
            known = ", ".join(sorted(scope.params)) or "none"
            self.issue(path, f"template uses undeclared param {name!r}; declared: {known}", "unknown_param")
            return None
        return scope.params[name]

    def rewrite_expr(self, expr: str, scope: _Scope, path: str) -> str:
        if scope.params is not None and _MENTIONS_PARAMS.search(expr):
            self.issue(
                path,
                f"template {{{{{expr}}}}} uses .params in an expression; only {{{{ .params.<name> }}}} "
                "is substituted inside a blueprint; pass the computed value as a param",
                "blueprint_param_expression",
            )
        if ".steps" not in expr:
            return expr

        def sub(match: re.Match) -> str:
            local = match.group(1) or match.group(2)
            target = scope.step_map.get(local)
            if target is None or (target == local and match.group(1)):
                return match.group(0)
            return f'.steps["{target}"]'

        return _STEP_REF.sub(sub, expr)


_NO_PARAM = object()


def param_fits(type_name: str, value, *, secret_ok: bool = False) -> bool:
    """Whether `value` is of a declared param type (``pipelines.value_types``, the step config
    field types); `secret_ok`: a secret reference passes for a string (it resolves to text at
    run time)."""
    if secret_ok and type_name == "string" and _is_secret(value):
        return True
    return fits(type_name, value)


def _is_secret(value) -> bool:
    return isinstance(value, Mapping) and isinstance(value.get("$secret"), str)


def _json_text(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _own(node: Mapping, key: str, path: str, inherited):
    """``(value, path)`` of ``key`` on ``node``, else the inherited pair (or (None, None))."""
    if node.get(key) is not None:
        return node[key], f"{path}.{key}"
    return inherited if inherited is not None else (None, None)


def _aliases(prefix: str) -> tuple[str, ...]:
    if not prefix:
        return ()
    parts = prefix.rstrip("/").split("/")
    return tuple("/".join(parts[: i + 1]) for i in range(len(parts)))


def _param_schema(schema) -> dict:
    """Normalise ``{name: {default, required, type}}`` or a JSON-Schema object to the first form."""
    if not isinstance(schema, Mapping):
        return {}
    if "properties" in schema or schema.get("type") == "object":
        required = set(schema.get("required") or ())
        out = {}
        for name, prop in (schema.get("properties") or {}).items():
            spec = {"required": name in required}
            if isinstance(prop, Mapping) and "default" in prop:
                spec["default"] = prop["default"]
            if isinstance(prop, Mapping) and prop.get("type") in VALUE_TYPES:
                spec["type"] = prop["type"]
            out[name] = spec
        return out
    return {name: (spec if isinstance(spec, Mapping) else {"default": spec}) for name, spec in schema.items()}


def _deep_merge(base, override):
    if isinstance(base, Mapping) and isinstance(override, Mapping):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = _deep_merge(base[key], value) if key in base else value
        return merged
    return override
