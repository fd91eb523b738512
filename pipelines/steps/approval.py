"""The `approval` step type: the run waits for a person (a gate, `pipelines.engine.segments`).

An approval never runs as a task: the canvas stops before it, the control plane asks the
approvers, and their decision is the step's outcome (approve: the decision's `input` is the
step's output; reject or timeout: the step fails and the run compensates). This module holds
what is pure about it: the config's schema and checks, and the input form's validation.

Config: `approvers: {roles: [...], users: [...]}` (members of the run's company; a role admits
that role and every higher one), `four_eyes` (the run's requester may not decide), `timeout_s`
(how long the approval stays open), `prompt` (templated from the run's context) and
`input_schema`, a small JSON Schema for the decision's input (bounded in size and depth: it is
shown as a form and checked on every decision).
"""
from __future__ import annotations

import json
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from pipelines import errors as E
from pipelines.errors import Issue, StepFailed
from pipelines.steps.base import Field, StepContext, StepType
from pipelines.steps.registry import register_step_type

ROLES = ("owner", "admin", "editor", "viewer")
DEFAULT_TIMEOUT_S = 24 * 3600
MAX_TIMEOUT_S = 30 * 24 * 3600
MAX_PROMPT_CHARS = 4000
MAX_SCHEMA_CHARS = 16 * 1024
MAX_SCHEMA_DEPTH = 8
MAX_INPUT_CHARS = 64 * 1024
MAX_APPROVERS = 100

_APPROVERS = {
    "additionalProperties": False,
    "properties": {
        "roles": {"type": "array", "maxItems": len(ROLES), "uniqueItems": True,
                  "items": {"enum": list(ROLES)}},
        "users": {"type": "array", "maxItems": MAX_APPROVERS, "uniqueItems": True,
                  "items": {"type": "string", "minLength": 1, "maxLength": 150}},
    },
}


@register_step_type
class ApprovalStep(StepType):
    name = "approval"
    description = ("Wait for a person: approvers (roles and/or users of the company) approve, with an "
                   "input the step outputs, or reject; reject and timeout fail the step.")
    config_schema = {
        "approvers": Field("object", required=True, schema=_APPROVERS,
                           description="who may decide: {roles: [owner|admin|editor|viewer], users: [username]}"),
        "four_eyes": Field("boolean", default=False, description="the run's requester may not decide"),
        "timeout_s": Field("number", default=DEFAULT_TIMEOUT_S, minimum=1, maximum=MAX_TIMEOUT_S,
                           description="seconds the approval stays open before it expires (the step fails)"),
        "prompt": Field("string", default="", schema={"maxLength": MAX_PROMPT_CHARS},
                        description="what the approvers are asked (may use templates)"),
        "input_schema": Field("object", description="a small JSON Schema of the decision's input"),
    }

    def validate_config(self, config: Any, path: str = "config") -> list[Issue]:
        issues = super().validate_config(config, path)
        if issues or not isinstance(config, dict):
            return issues
        approvers = config.get("approvers") or {}
        if isinstance(approvers, dict) and not (approvers.get("roles") or approvers.get("users")):
            issues.append(Issue(f"{path}.approvers", "name at least one approver: a role in `roles` or a "
                                                    "username in `users`", E.INVALID_CONFIG))
        schema = config.get("input_schema")
        if isinstance(schema, dict):
            issues.extend(input_schema_issues(schema, f"{path}.input_schema"))
        return issues

    def run(self, config: dict, ctx: StepContext) -> Any:
        raise StepFailed(f"approval step {ctx.node_id!r} is a gate: people decide it through the approvals API, "
                         "it never runs as a task", retryable=False, code="approval_not_runnable")


def input_schema_issues(schema: dict, path: str) -> list[Issue]:
    """Why `schema` cannot be an approval's input form: too big, too deep, or no valid JSON Schema."""
    size = len(json.dumps(schema, default=str))
    if size > MAX_SCHEMA_CHARS:
        return [Issue(path, f"input_schema is {size} characters; keep it under {MAX_SCHEMA_CHARS}", E.INVALID_CONFIG)]
    depth = _depth(schema)
    if depth > MAX_SCHEMA_DEPTH:
        return [Issue(path, f"input_schema nests {depth} levels deep; keep it within {MAX_SCHEMA_DEPTH}",
                      E.INVALID_CONFIG)]
    if "$ref" in json.dumps(schema):
        return [Issue(path, "input_schema may not use $ref; write the form out", E.INVALID_CONFIG)]
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = ".".join(str(p) for p in exc.absolute_path)
        return [Issue(f"{path}.{where}" if where else path, f"not a valid JSON Schema: {exc.message}",
                      E.INVALID_CONFIG)]
    return [Issue(where, message, E.INVALID_CONFIG) for where, message in _risky_patterns(schema, path)]


# The decision's input is checked in the web process with Python's backtracking `re`, where a
# pattern can take exponential time (`(a+)+$`) or a high power of the input's length (`a*a*a*b`)
# with no way to stop it: input forms have no `pattern` or `patternProperties` (a person fills
# them in; `enum`, `minLength` and `maxLength` bound what they type).
_UNSAFE_KEYWORDS = ("pattern", "patternProperties")


_NAME_MAPS = ("properties", "$defs", "definitions", "dependentSchemas")  # {name: schema}: names are data


def _risky_patterns(schema: Any, path: str):
    stack = [(schema, path)]
    while stack:
        node, where = stack.pop()
        if isinstance(node, list):
            stack.extend((value, f"{where}[{i}]") for i, value in enumerate(node))
            continue
        if not isinstance(node, dict):
            continue
        for keyword in _UNSAFE_KEYWORDS:
            if keyword in node:
                yield f"{where}.{keyword}", (f"input_schema may not use {keyword!r} (matching it cannot be bounded "
                                             "in time); use enum, minLength or maxLength")
        for key, value in node.items():
            if key in _NAME_MAPS and isinstance(value, dict):
                stack.extend((sub, f"{where}.{key}.{name}") for name, sub in value.items())
            elif isinstance(value, (dict, list)):
                stack.append((value, f"{where}.{key}"))


def input_issues(schema: dict | None, value: Any, path: str = "input") -> list[Issue]:
    """Why `value` is no valid decision input for `schema` (None: any JSON object), each issue
    naming the path of the culprit (`input.reason`)."""
    if len(json.dumps(value, default=str)) > MAX_INPUT_CHARS:
        return [Issue(path, f"the input is over {MAX_INPUT_CHARS} characters", E.INVALID_CONFIG)]
    if _depth(value) > 2 * MAX_SCHEMA_DEPTH:
        return [Issue(path, f"the input nests deeper than {2 * MAX_SCHEMA_DEPTH} levels", E.INVALID_CONFIG)]
    if schema is None:
        if not isinstance(value, dict):
            return [Issue(path, "the input must be a JSON object", E.INVALID_CONFIG)]
        return []
    validator = Draft202012Validator(schema)
    issues = []
    for error in sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path)):
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
        issues.append(Issue(f"{path}{where}", error.message, E.INVALID_CONFIG))
    return issues[:20]


def _depth(value: Any) -> int:
    """Nesting depth of a JSON value (iterative: a hostile document cannot blow the stack)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if level > 64:
            return level
        if isinstance(item, dict):
            stack.extend((v, level + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, level + 1) for v in item)
    return deepest
