"""What a step type is: a config JSON Schema and a ``run(config, ctx)``.

A step type declares its config as a table of ``Field``s (a compact way to write one JSON
Schema property each); ``StepType.config_json_schema()`` turns the table into a draft 2020-12
JSON Schema, which the API publishes and ``validate_config`` checks with ``jsonschema``
(``pipelines.steps.schema``). Step types are stateless; the registry keeps one instance of
each. The engine renders the ``{{ jq }}`` templates of a config first, then calls ``run`` with
the rendered config and a ``StepContext``. ``run`` returns JSON-safe output or raises
``StepFailed``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pipelines import errors as E
from pipelines.egress import EgressPolicy
from pipelines.errors import Issue, StepConfigError
from pipelines.steps import schema as S
from pipelines.value_types import VALUE_TYPES, json_type, type_schema


@dataclass(frozen=True)
class Field:
    """One config key of a step type: a JSON Schema property written short.

    ``minimum``/``maximum`` bound numbers (inclusive); ``schema`` adds further JSON Schema
    keywords (``{"additionalProperties": {"type": "string"}}`` for an object of strings).
    An optional field also accepts null, which means "use the default".
    """

    type: str
    required: bool = False
    default: Any = None
    choices: tuple | None = None
    description: str = ""
    minimum: float | None = None
    maximum: float | None = None
    schema: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.type not in VALUE_TYPES:
            raise ValueError(f"Field type {self.type!r} is not one of {', '.join(VALUE_TYPES)}")
        if self.choices is not None:
            object.__setattr__(self, "choices", tuple(self.choices))

    def json_schema(self) -> dict[str, Any]:
        """This field as a JSON Schema property."""
        out = type_schema(self.type)
        if "type" in out and not self.required:
            out["type"] = [out["type"], "null"]
        if self.choices is not None:
            out["enum"] = list(self.choices) + ([] if self.required else [None])
        if self.minimum is not None:
            out["minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        if self.default is not None:
            out["default"] = _copy_default(self.default)
        if self.description:
            out["description"] = self.description
        out.update(self.schema or {})
        return out


@dataclass(frozen=True)
class StepContext:
    """Everything a running step may know about where and why it runs.

    ``deadline_s`` is an absolute ``time.time()`` by which the step must finish, or None.
    ``idempotency_key`` defaults to ``<execution>:<node>:<shard>`` so a redelivered step
    presents the same key to the outside world (the attempt is deliberately not part of it).
    ``egress`` decides which addresses a step may connect to; every step that opens connections
    goes through it. The default refuses every non-public address. ``mailer`` sends one email
    (a dict: ``to``, ``subject``, ``body``, ``headers``) through whatever transport the engine
    provides; without one, email steps fail with a clear error.
    """

    execution_id: str
    node_id: str
    attempt: int = 1
    shard_index: int = 0
    shard_count: int = 1
    idempotency_key: str = ""
    context: dict = field(default_factory=dict)
    deadline_s: float | None = None
    egress: EgressPolicy = field(default_factory=EgressPolicy)
    mailer: Callable[[dict], None] | None = None

    def __post_init__(self) -> None:
        if not self.idempotency_key:
            object.__setattr__(self, "idempotency_key",
                               f"{self.execution_id}:{self.node_id}:{self.shard_index}")

    def remaining_s(self) -> float | None:
        """Seconds left before the deadline (never negative), or None without a deadline."""
        if self.deadline_s is None:
            return None
        return max(0.0, self.deadline_s - time.time())


class StepType:
    """Base class of step types; subclasses set ``name``, ``description``, ``config_schema``
    and implement ``run``. Register them with ``pipelines.steps.register_step_type``."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    config_schema: ClassVar[dict[str, Field]] = {}
    # Whether ``run`` reads ``ctx.context`` itself (beyond its already-rendered config). An engine
    # may skip loading upstream outputs for a step whose config has no templates and whose type
    # says False; the safe default is True.
    reads_context: ClassVar[bool] = True
    # True for a step whose only effect is its output (no I/O, no waiting): an engine may claim,
    # run and record it in one transaction, since a rollback leaves nothing behind to undo.
    side_effect_free: ClassVar[bool] = False

    @classmethod
    def _compiled(cls) -> tuple[dict[str, Any], Any]:
        """``(JSON Schema, checker)`` of this class's config, built on first use and kept on
        the class itself (not inherited: a subclass has its own fields)."""
        compiled = cls.__dict__.get("_compiled_config_schema")
        if compiled is None:
            schema = S.config_schema(cls.name, cls.description, cls.config_schema)
            compiled = (schema, S.compile_schema(schema))
            cls._compiled_config_schema = compiled
        return compiled

    @classmethod
    def config_json_schema(cls) -> dict[str, Any]:
        """The config's JSON Schema (draft 2020-12), a fresh copy."""
        return _copy_default(cls._compiled()[0])

    def validate_config(self, config: Any, path: str = "config") -> list[Issue]:
        """Every schema problem of ``config``: missing_config or invalid_config issues."""
        if config is None:
            config = {}
        if not isinstance(config, dict):
            return [Issue(path, f"config of step type {self.name!r} must be an object, "
                                f"got {json_type(config)}", E.INVALID_CONFIG)]
        return S.config_issues(self._compiled()[1], config, path, self.name)

    def with_defaults(self, config: dict | None) -> dict:
        """A copy of ``config`` with absent (or null) optional keys set to their defaults.

        Keys whose default is None stay absent, so a step can tell "not given" from null.
        """
        out = dict(config or {})
        for key, spec in self.config_schema.items():
            if out.get(key) is None and not spec.required and spec.default is not None:
                out[key] = _copy_default(spec.default)
        return out

    def check_config(self, config: Any, path: str = "config") -> None:
        """Raise ``StepConfigError`` listing every issue, if any."""
        issues = self.validate_config(config, path)
        if issues:
            summary = "; ".join(f"{i.path}: {i.message}" for i in issues)
            raise StepConfigError(f"invalid config for step type {self.name!r}: {summary}",
                                  issues)

    def run(self, config: dict, ctx: StepContext) -> Any:
        raise NotImplementedError(f"step type {self.name!r} does not implement run()")

    @classmethod
    def describe(cls) -> dict[str, Any]:
        """JSON-safe description for catalogs and the API: name, description, whether it has
        side effects, and the config's JSON Schema."""
        return {"name": cls.name, "description": cls.description,
                "side_effect_free": cls.side_effect_free,
                "config_schema": cls.config_json_schema()}


def _copy_default(value: Any) -> Any:
    # Mutable defaults must not be shared between runs.
    if isinstance(value, dict):
        return {k: _copy_default(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy_default(v) for v in value]
    return value
