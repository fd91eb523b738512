"""Validate a graph document and report every problem with its path. Never raises.

On top of the structural checks shared with ``graph.parse_graph`` (ids, edges, branches,
cycles, field types), this checks what needs the step-type registry: known step types,
each config against its type's schema, jq programs and ``{{ jq }}`` templates that do not
compile, and ``compensate`` specs. Blueprint and template nodes are checked for syntax only;
whether they exist is the planner's question.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from pipelines import errors as E
from pipelines.errors import GraphError, Issue, sort_issues
from pipelines.graph import Graph
from pipelines.steps.map import MAP_TYPE
from pipelines.structure import parse_structure
from pipelines.templating import template_issues

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ValidationReport:
    """Every issue found, sorted by path; ``graph`` is the parsed graph only when ``ok``."""

    issues: tuple[Issue, ...]
    graph: Graph | None

    @property
    def ok(self) -> bool:
        return not self.issues

    def codes(self) -> tuple[str, ...]:
        return tuple(i.code for i in self.issues)

    def raise_for_issues(self) -> Graph:
        """Return the graph, or raise ``GraphError`` carrying the issues."""
        if self.issues:
            raise GraphError(self.issues)
        assert self.graph is not None
        return self.graph

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "issues": [i.to_dict() for i in self.issues]}


def validate_graph(doc: Any, *, step_types: Any = None, expanded: bool = False) -> ValidationReport:
    """Check ``doc`` and return a report; bad input of any shape becomes issues.

    ``step_types`` is the set of usable types: None for the registry, a mapping of name to
    ``StepType`` (instance or class), or an iterable of names (schemas then come from the
    registry where it has them).
    """
    try:
        return _validate(doc, _resolve_step_types(step_types), expanded)
    except Exception as exc:  # a bug here must become a 400 with a message, not a 500
        logger.exception("validate_graph failed unexpectedly")
        return ValidationReport((Issue("", f"could not validate the document: {exc}",
                                       E.INVALID_DOCUMENT),), None)


def _resolve_step_types(step_types: Any) -> Mapping[str, Any]:
    from pipelines import steps

    if step_types is None:
        return {name: steps.get_step_type(name) for name in steps.step_type_names()}
    if isinstance(step_types, Mapping):
        return {name: (t() if isinstance(t, type) else t) for name, t in step_types.items()}
    resolved: dict[str, Any] = {}
    for name in step_types:
        resolved[name] = steps.get_step_type(name) if steps.is_step_type(name) else None
    return resolved


def _validate(doc: Any, types: Mapping[str, Any], expanded: bool) -> ValidationReport:
    graph, issues, _cycle = parse_structure(doc, expanded=expanded)
    raw_nodes = doc.get("nodes") if isinstance(doc, dict) else None
    if isinstance(raw_nodes, list):
        for i, raw in enumerate(raw_nodes):
            if isinstance(raw, dict):
                issues.extend(_node_issues(raw, f"nodes[{i}]", types))
    issues = _dedupe(issues)
    return ValidationReport(sort_issues(issues), graph if not issues else None)


def _node_issues(raw: dict, p: str, types: Mapping[str, Any]) -> list[Issue]:
    issues: list[Issue] = []
    nid = raw.get("id")
    label = f"node {nid!r}" if isinstance(nid, str) else "node"
    config = raw.get("config")
    step_type = raw.get("type")
    if isinstance(step_type, str) and step_type:
        issues.extend(_step_issues(step_type, config, f"{p}.type", f"{p}.config", label, types))
    elif isinstance(config, dict):
        # Blueprint/template nodes: their config is merged later; check the jq syntax now.
        issues.extend(template_issues(config, f"{p}.config"))
    params = raw.get("params")
    if isinstance(params, dict):
        issues.extend(template_issues(params, f"{p}.params"))
    if step_type == MAP_TYPE and raw.get("replicas", 1) != 1:
        issues.append(Issue(f"{p}.replicas", f"{label} is a map: it runs one shard per item, so it cannot "
                                              "also have replicas; remove replicas (max_parallel bounds "
                                              "how many items run at once)", E.INVALID_FIELD))

    compensate = raw.get("compensate")
    if isinstance(compensate, dict) and isinstance(compensate.get("type"), str):
        issues.extend(_step_issues(compensate["type"], compensate.get("config"),
                                   f"{p}.compensate.type", f"{p}.compensate.config",
                                   f"compensation of {label}", types))
    return issues


def _step_issues(type_name: str, config: Any, type_path: str, config_path: str, label: str,
                 types: Mapping[str, Any]) -> list[Issue]:
    if type_name not in types:
        known = ", ".join(sorted(types)) or "none"
        return [Issue(type_path, f"unknown step type {type_name!r} on {label}; known types: "
                                 f"{known}", E.UNKNOWN_STEP_TYPE)]
    if config is not None and not isinstance(config, dict):
        return []  # the structural check already reported it
    issues: list[Issue] = []
    step = types[type_name]
    if step is not None:
        issues.extend(step.validate_config(config or {}, config_path))
    issues.extend(template_issues(config or {}, config_path))
    return issues


def _dedupe(issues: Iterable[Issue]) -> list[Issue]:
    # A step type's own jq check and the template check can meet on one string.
    seen: set[tuple[str, str]] = set()
    out: list[Issue] = []
    for issue in issues:
        key = (issue.path, issue.code)
        if key not in seen:
            seen.add(key)
            out.append(issue)
    return out
