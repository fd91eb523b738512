"""The step-type registry: type name -> one shared, stateless ``StepType`` instance, and
``render_step_config`` / ``run_step``, which take a step spec through render, secret
resolution and ``run``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pipelines import errors as E
from pipelines.errors import Issue, PipelineError, StepConfigError, StepFailed
from pipelines.secrets import MISSING_SECRET, find_secret_refs, redact, resolve_secret_refs
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


def render_step_config(spec: StepSpec | dict, ctx: StepContext | Mapping) -> dict:
    """Validate ``spec`` and render its templates against ``ctx.context`` (or a context mapping).

    The result still holds ``{"$secret": name}`` references: it is what the engine may store
    as a step's input. Only references written in the spec survive; a template that renders
    to a reference (say, from a step's output) is refused, so run-time data can never choose
    which secret gets resolved. Raises ``StepConfigError`` or ``TemplateError``.
    """
    spec = _as_spec(spec)
    step_type = spec.step_type
    step_type.check_config(spec.config)
    context = ctx.context if isinstance(ctx, StepContext) else ctx
    config = render(spec.config, context,
                    deadline_s=ctx.deadline_s if isinstance(ctx, StepContext) else None)
    if config != spec.config:
        check_rendered_refs(spec.config, config)
        # Templates may render to values of the wrong type; check the rendered form too.
        step_type.check_config(config)
    return config


def run_step(spec: StepSpec | dict, ctx: StepContext, *, render_templates: bool = True,
             secret_resolver: Callable[[str], str] | None = None) -> Any:
    """Validate, render against ``ctx.context``, resolve secrets, fill defaults and run one step.

    ``render_templates=False`` runs a config the caller already rendered (with
    ``render_step_config``). Secret references are resolved with ``secret_resolver(name)``
    after rendering, right before ``run``; without a resolver a config holding references is
    refused. A resolved value that shows up in a failure's message or details is replaced by
    ``<secret:name>``.

    Raises ``StepConfigError`` for a bad config or an unresolvable secret, ``TemplateError``
    for a failing template, ``StepFailed`` from the step itself.
    """
    spec = _as_spec(spec)
    step_type = spec.step_type
    if render_templates:
        config = render_step_config(spec, ctx)
    else:
        step_type.check_config(spec.config)
        config = spec.config
    refs = find_secret_refs(config)
    if not refs:
        return step_type.run(step_type.with_defaults(config), ctx)
    values = _resolve_all(refs, secret_resolver, step_type.name)
    config = resolve_secret_refs(config, values.__getitem__)
    try:
        return step_type.run(step_type.with_defaults(config), ctx)
    except StepFailed as exc:
        message, details = redact(exc.message, values), redact(exc.details, values)
        if message == exc.message and details == exc.details:
            raise
        raise StepFailed(message, retryable=exc.retryable, details=details, code=exc.code) from None
    except Exception as exc:
        if not any(text and text in str(exc) for text in values.values()):
            raise
        raise StepFailed(f"{type(exc).__name__}: {redact(str(exc), values)}", retryable=True,
                         details={"reason": "exception"}) from None


def _as_spec(spec: StepSpec | dict) -> StepSpec:
    return StepSpec.from_dict(spec) if isinstance(spec, dict) else spec


def check_rendered_refs(before: dict, after: dict) -> None:
    """Refuse references in the rendered config ``after`` that ``before`` (as written) lacks:
    a template that renders run-time data must never choose which secret is resolved."""
    written = set(find_secret_refs(before))
    extra = [(path, name) for path, name in find_secret_refs(after) if (path, name) not in written]
    if extra:
        issues = [Issue(path, f"a template rendered to a secret reference ({name!r}); write "
                              '{"$secret": name} in the graph itself', E.INVALID_CONFIG)
                  for path, name in extra]
        raise StepConfigError("secret references must be written in the graph, not computed: "
                              + ", ".join(path for path, _ in extra), issues)


def _resolve_all(refs, resolver, type_name: str) -> dict[str, str]:
    """name -> text for every referenced secret, asking ``resolver`` once per name."""
    if resolver is None:
        paths = ", ".join(path for path, _ in refs)
        raise StepConfigError(f"config of step type {type_name!r} holds secret references "
                              f"({paths}) but no secret resolver was given; pass "
                              "secret_resolver to run_step",
                              [Issue(path, f"secret {name!r} cannot be resolved here",
                                     MISSING_SECRET) for path, name in refs])
    values: dict[str, str] = {}
    for path, name in refs:
        if name in values:
            continue
        try:
            text = resolver(name)
        except LookupError:
            raise StepConfigError(f"{path}: secret {name!r} does not exist; create it or fix "
                                  "the reference",
                                  [Issue(path, f"secret {name!r} does not exist",
                                         MISSING_SECRET)]) from None
        if not isinstance(text, str):
            raise StepConfigError(f"{path}: the secret resolver returned "
                                  f"{type(text).__name__} for {name!r}; it must return text")
        values[name] = text
    return values
