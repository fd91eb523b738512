"""The step-type registry: type name -> one shared, stateless ``StepType`` instance."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipelines.errors import PipelineError, StepConfigError
from pipelines.steps.base import StepContext, StepType
from pipelines.templating import render

_REGISTRY: dict[str, StepType] = {}


def register_step_type(cls: type[StepType]) -> type[StepType]:
    """Register a ``StepType`` subclass under ``cls.name``; usable as a class decorator."""
    if not (isinstance(cls, type) and issubclass(cls, StepType)):
        raise PipelineError(f"register_step_type expects a StepType subclass, got {cls!r}")
    if not cls.name:
        raise PipelineError(f"step type {cls.__qualname__} has no name; set the class attribute")
    existing = _REGISTRY.get(cls.name)
    if existing is not None and _qualname(type(existing)) != _qualname(cls):
        raise PipelineError(f"step type {cls.name!r} is already registered by "
                            f"{_qualname(type(existing))}; choose another name")
    _REGISTRY[cls.name] = cls()
    return cls


def unregister_step_type(name: str) -> None:
    """Remove a step type (for tests that register throwaway types)."""
    _REGISTRY.pop(name, None)


def get_step_type(name: str) -> StepType:
    """The registered instance for ``name``; raises ``PipelineError`` naming the known types."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise PipelineError(f"unknown step type {name!r}; known types: "
                            f"{', '.join(step_type_names())}") from None


def step_type_names() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


def is_step_type(name: Any) -> bool:
    return isinstance(name, str) and name in _REGISTRY


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


@dataclass(frozen=True)
class StepSpec:
    """A step as data: its type name and (unrendered) config. Round-trips through dicts."""

    type: str
    config: dict = field(default_factory=dict)

    def __hash__(self) -> int:  # config is a dict
        return hash(("step", self.type))

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "config": dict(self.config)}

    @classmethod
    def from_dict(cls, data: Any) -> "StepSpec":
        if not isinstance(data, dict) or not isinstance(data.get("type"), str):
            raise PipelineError(f"a step spec is a mapping with a 'type' string, got {data!r}")
        config = data.get("config") or {}
        if not isinstance(config, dict):
            raise StepConfigError(f"config of step {data['type']!r} must be an object")
        return cls(type=data["type"], config=dict(config))

    @property
    def step_type(self) -> StepType:
        return get_step_type(self.type)

    def validate(self, path: str = "config"):
        return self.step_type.validate_config(self.config, path)


def run_step(spec: StepSpec | dict, ctx: StepContext, *, render_templates: bool = True) -> Any:
    """Validate, render against ``ctx.context``, fill defaults and run one step.

    Raises ``StepConfigError`` for a bad config, ``TemplateError`` for a failing template,
    ``StepFailed`` from the step itself.
    """
    if isinstance(spec, dict):
        spec = StepSpec.from_dict(spec)
    step_type = spec.step_type
    step_type.check_config(spec.config)
    config = render(spec.config, ctx.context) if render_templates else spec.config
    if render_templates and config != spec.config:
        # Templates may render to values of the wrong type; check the rendered form too.
        step_type.check_config(config)
    return step_type.run(step_type.with_defaults(config), ctx)
