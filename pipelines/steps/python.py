"""The ``python`` step: calls a function from an allow-list, never arbitrary code.

A graph names a callable (``config.callable``); only functions registered with
``@register_callable("name")`` can be named, so a graph author cannot reach into the
worker's Python. Callables take the config's ``kwargs`` and return JSON-safe output.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable

from pipelines import errors as E
from pipelines.errors import Issue, PipelineError, StepFailed
from pipelines.steps.base import Field, StepContext, StepType
from pipelines.steps.registry import register_step_type
from pipelines.templating import has_template


@dataclass(frozen=True)
class RegisteredCallable:
    name: str
    func: Callable[..., Any]
    pass_context: bool = False  # if True the callable also receives ctx=StepContext


_CALLABLES: dict[str, RegisteredCallable] = {}


def register_callable(name: str, *, pass_context: bool = False):
    """Decorator adding a function to the allow-list under ``name``."""
    if not isinstance(name, str) or not name:
        raise PipelineError("register_callable needs a non-empty name")

    def decorator(func: Callable[..., Any]) -> Callable[..., Any]:
        existing = _CALLABLES.get(name)
        if existing is not None and _qualname(existing.func) != _qualname(func):
            raise PipelineError(f"callable {name!r} is already registered by "
                                f"{_qualname(existing.func)}; choose another name")
        _CALLABLES[name] = RegisteredCallable(name, func, pass_context)
        return func

    return decorator


def unregister_callable(name: str) -> None:
    _CALLABLES.pop(name, None)


def callable_names() -> tuple[str, ...]:
    return tuple(sorted(_CALLABLES))


def get_callable(name: str) -> RegisteredCallable:
    try:
        return _CALLABLES[name]
    except (KeyError, TypeError):
        raise PipelineError(f"unknown python callable {name!r}; registered callables: "
                            f"{', '.join(callable_names()) or 'none'}") from None


def _qualname(func: Callable) -> str:
    return f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', repr(func))}"


@register_step_type
class PythonStep(StepType):
    name = "python"
    description = "Call an allow-listed Python function with keyword arguments."
    config_schema = {
        "callable": Field("string", required=True,
                          description="name given to @register_callable"),
        "kwargs": Field("object", default={}, description="keyword arguments"),
    }

    def validate_config(self, config: Any, path: str = "config") -> list[Issue]:
        issues = super().validate_config(config, path)
        name = config.get("callable") if isinstance(config, dict) else None
        if isinstance(name, str) and not has_template(name) and name not in _CALLABLES:
            issues.append(Issue(f"{path}.callable", f"unknown python callable {name!r}; "
                                f"registered callables: {', '.join(callable_names()) or 'none'}",
                                E.INVALID_CONFIG))
        return issues

    def run(self, config: dict, ctx: StepContext) -> Any:
        config = self.with_defaults(config)
        try:
            entry = get_callable(config["callable"])
        except PipelineError as exc:
            raise StepFailed(str(exc), retryable=False) from None
        kwargs = dict(config.get("kwargs") or {})
        if entry.pass_context:
            kwargs["ctx"] = ctx
        try:
            result = entry.func(**kwargs)
        except StepFailed:
            raise
        except (TypeError, ValueError) as exc:
            # Wrong arguments or bad values fail the same way on every attempt.
            raise StepFailed(f"callable {entry.name!r} rejected its input: {exc}",
                             retryable=False,
                             details={"callable": entry.name, "error": type(exc).__name__}) from exc
        except Exception as exc:
            raise StepFailed(f"callable {entry.name!r} raised {type(exc).__name__}: {exc}",
                             retryable=True,
                             details={"callable": entry.name, "error": type(exc).__name__}) from exc
        try:
            json.dumps(result, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise StepFailed(f"callable {entry.name!r} returned output that is not JSON-safe: "
                             f"{exc}; return dicts, lists, strings, numbers, booleans or None",
                             retryable=False, details={"callable": entry.name}) from None
        return result
