"""What a step type is: a config schema of ``Field``s and a ``run(config, ctx)``.

Step types are stateless; the registry keeps one instance of each. The engine renders the
``{{ jq }}`` templates of a config first, then calls ``run`` with the rendered config and a
``StepContext``. ``run`` returns JSON-safe output or raises ``StepFailed``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pipelines import errors as E
from pipelines.egress import EgressPolicy
from pipelines.errors import Issue, StepConfigError
from pipelines.secrets import is_secret_ref, malformed_ref_issue, malformed_secret_refs
from pipelines.templating import has_template

FIELD_TYPES = ("string", "number", "integer", "boolean", "object", "array", "any")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


_TYPE_CHECKS = {
    "string": lambda v: isinstance(v, str),
    "number": _is_number,
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "any": lambda v: True,
}


@dataclass(frozen=True)
class Field:
    """One config key of a step type. ``minimum``/``maximum`` bound numbers (inclusive)."""

    type: str
    required: bool = False
    default: Any = None
    choices: tuple | None = None
    description: str = ""
    minimum: float | None = None
    maximum: float | None = None

    def __post_init__(self) -> None:
        if self.type not in FIELD_TYPES:
            raise ValueError(f"Field type {self.type!r} is not one of {', '.join(FIELD_TYPES)}")
        if self.choices is not None:
            object.__setattr__(self, "choices", tuple(self.choices))

    def check(self, value: Any, path: str, key: str) -> list[Issue]:
        """Issues for one present value; a templated string passes, it is rendered at run time.

        A secret reference ``{"$secret": name}`` passes where text is accepted (a string
        without choices, or any value): it is resolved to text right before ``run``.
        """
        if has_template(value):
            return []
        if is_secret_ref(value):
            return self._check_secret_ref(path, key)
        if self.type in ("object", "array", "any"):
            # Free-form values may hold references anywhere; only malformed ones are wrong.
            malformed = [malformed_ref_issue(p) for p in malformed_secret_refs(value, path)]
            if malformed:
                return malformed
        if not _TYPE_CHECKS[self.type](value):
            return [Issue(path, f"config {key!r} must be {_article(self.type)}, "
                                f"got {_json_type(value)}", E.INVALID_CONFIG)]
        if self.choices is not None and value not in self.choices:
            allowed = ", ".join(repr(c) for c in self.choices)
            return [Issue(path, f"config {key!r} is {value!r}; choose one of {allowed}",
                          E.INVALID_CONFIG)]
        if self.type in ("number", "integer"):
            if self.minimum is not None and value < self.minimum:
                return [Issue(path, f"config {key!r} is {value}; it must be >= {self.minimum:g}",
                              E.INVALID_CONFIG)]
            if self.maximum is not None and value > self.maximum:
                return [Issue(path, f"config {key!r} is {value}; it must be <= {self.maximum:g}",
                              E.INVALID_CONFIG)]
        return []

    def _check_secret_ref(self, path: str, key: str) -> list[Issue]:
        if self.type == "any" or (self.type == "string" and self.choices is None):
            return []
        if self.type == "string":
            allowed = ", ".join(repr(c) for c in self.choices or ())
            return [Issue(path, f"config {key!r} must be one of {allowed}; a secret cannot be "
                                "checked against them, write the value itself", E.INVALID_CONFIG)]
        return [Issue(path, f"config {key!r} must be {_article(self.type)}; a secret reference "
                            "stands for text, write the value itself", E.INVALID_CONFIG)]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "required": self.required,
                               "default": self.default, "description": self.description}
        if self.choices is not None:
            out["choices"] = list(self.choices)
        if self.minimum is not None:
            out["minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        return out


def _article(type_name: str) -> str:
    return {"any": "any value", "integer": "an integer", "object": "an object",
            "array": "an array"}.get(type_name, f"a {type_name}")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


@dataclass(frozen=True)
class StepContext:
    """Everything a running step may know about where and why it runs.

    ``deadline_s`` is an absolute ``time.time()`` by which the step must finish, or None.
    ``idempotency_key`` defaults to ``<execution>:<node>:<shard>`` so a redelivered step
    presents the same key to the outside world (the attempt is deliberately not part of it).
    ``egress`` decides which addresses a step may connect to; every step that opens connections
    goes through it. The default refuses every non-public address.
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

    def validate_config(self, config: Any, path: str = "config") -> list[Issue]:
        """Every schema problem of ``config``: missing_config or invalid_config issues."""
        if config is None:
            config = {}
        if not isinstance(config, dict):
            return [Issue(path, f"config of step type {self.name!r} must be an object, "
                                f"got {_json_type(config)}", E.INVALID_CONFIG)]
        issues: list[Issue] = []
        for key in sorted(set(config) - set(self.config_schema)):
            known = ", ".join(sorted(self.config_schema)) or "none"
            issues.append(Issue(f"{path}.{key}", f"unknown config {key!r} for step type "
                                f"{self.name!r}; known keys: {known}", E.INVALID_CONFIG))
        for key, spec in self.config_schema.items():
            if key not in config:
                if spec.required:
                    issues.append(Issue(f"{path}.{key}", f"step type {self.name!r} requires "
                                        f"config {key!r} ({spec.type})", E.MISSING_CONFIG))
                continue
            if config[key] is None and not spec.required:
                continue  # an explicit null means "use the default"
            issues.extend(spec.check(config[key], f"{path}.{key}", key))
        return issues

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
        """JSON-safe description for catalogs and the API."""
        return {"name": cls.name, "description": cls.description,
                "config_schema": {k: f.to_dict() for k, f in cls.config_schema.items()}}


def _copy_default(value: Any) -> Any:
    # Mutable defaults must not be shared between runs.
    if isinstance(value, dict):
        return {k: _copy_default(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy_default(v) for v in value]
    return value
