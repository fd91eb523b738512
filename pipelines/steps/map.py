"""The ``map`` step type: run a child step once per item of a list known only at run time.

A map node is a *gate* of the canvas (`pipelines.engine.fanout`): the engine renders ``items``
when the run reaches it, then runs the child ``step`` as one shard of the node per item, at
most ``max_parallel`` at a time, and joins their outputs into a list in item order. So ``run``
is never called for a map node; what this module owns is the config and its checks, which
publishing applies to the child step too (``config.step.type``, ``config.step.config.<key>``).

The child's templates see ``.item`` and ``.item_index`` besides the run's usual context. A
child cannot be a map (no nested fan-out: one level of items is what ``max_items`` bounds) nor
any other gate: a gate is a cut of the whole canvas, not something one item can wait on.
"""

from __future__ import annotations

from typing import Any

from pipelines import errors as E
from pipelines.engine.segments import GATE_TYPES  # types that cut the canvas: none can be a child
from pipelines.errors import Issue, StepFailed
from pipelines.steps.base import Field, StepContext, StepType
from pipelines.steps.registry import get_step_type, is_step_type, register_step_type, step_type_names
from pipelines.templating import has_template

MAP_TYPE = "map"
DEFAULT_MAX_PARALLEL = 10
MAX_PARALLEL = 100
# The ceiling of `max_items` when the control plane configures none (FLOWPLANE_MAP_MAX_ITEMS).
DEFAULT_MAX_ITEMS = 1000

_STEP_SCHEMA = {
    "required": ["type"],
    "properties": {"type": {"type": "string", "minLength": 1}, "config": {"type": ["object", "null"]}},
    "additionalProperties": False,
}


@register_step_type
class MapStep(StepType):
    name = MAP_TYPE
    description = ("Run a child step once per item of a list (dynamic fan-out), at most max_parallel at "
                   "a time; the output is the list of the items' outputs in item order.")
    config_schema = {
        "items": Field("any", required=True,
                       description='the list to fan out over, usually a template: "{{ .steps.discover.output.ids }}"'),
        "step": Field("object", required=True, schema=_STEP_SCHEMA,
                      description="the child step {type, config} run once per item; its templates see "
                                  ".item and .item_index"),
        "max_parallel": Field("integer", default=DEFAULT_MAX_PARALLEL, minimum=1, maximum=MAX_PARALLEL,
                              description="how many items run at once at most"),
        "max_items": Field("integer", minimum=1,
                           description="refuse a longer list (never above the control plane's "
                                       "FLOWPLANE_MAP_MAX_ITEMS)"),
    }

    def validate_config(self, config: Any, path: str = "config") -> list[Issue]:
        issues = super().validate_config(config, path)
        if isinstance(config, dict):
            items = config.get("items")
            if "items" in config and not isinstance(items, list) and not has_template(items):
                issues.append(Issue(f"{path}.items", "items must be a list or a template that renders to one "
                                    '(e.g. "{{ .steps.discover.output.ids }}")', E.INVALID_CONFIG))
            step = config.get("step")
            if isinstance(step, dict):
                issues.extend(child_issues(step, f"{path}.step"))
        return issues

    def run(self, config: dict, ctx: StepContext) -> Any:
        raise StepFailed(f"map node {ctx.node_id!r} is expanded by the engine into one shard per item; "
                         "it cannot run as a single step", retryable=False)


def child_issues(step: dict, path: str) -> list[Issue]:
    """What is wrong with a map's child step ``{type, config}`` (its config checked by its type)."""
    type_name = step.get("type")
    if not isinstance(type_name, str) or not type_name:
        return []  # the schema reported it
    if type_name in GATE_TYPES:
        return [Issue(f"{path}.type", f"a map's step cannot be {article_for(type_name)} step: "
                      f"{type_name!r} cuts the whole canvas; use a map over a plain step, and put "
                      "the gate before or after the map node", E.INVALID_CONFIG)]
    if not is_step_type(type_name):
        known = ", ".join(name for name in step_type_names() if name not in GATE_TYPES)
        return [Issue(f"{path}.type", f"unknown step type {type_name!r} for the map's step; known types: {known}",
                      E.UNKNOWN_STEP_TYPE)]
    config = step.get("config")
    if config is not None and not isinstance(config, dict):
        return []  # the schema reported it
    return get_step_type(type_name).validate_config(config or {}, f"{path}.config")


def article_for(type_name: str) -> str:
    return f"an {type_name}" if type_name[:1] in "aeiou" else f"a {type_name}"
