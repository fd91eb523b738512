"""The one vocabulary of value types, and the one checker, for step config and params.

Step config fields, blueprint params and job-template params all declare a type from
``VALUE_TYPES``: the JSON Schema type names plus ``any``. ``type_schema`` gives the JSON Schema
(draft 2020-12) fragment of a type and ``fits`` checks a value against it with the same type
checker the step-config validators use (``TYPE_CHECKER``), so a value that fits a param fits
the step field it lands in.

Two choices differ from JSON Schema's defaults, on purpose: a number is finite (``NaN`` and
infinities have no JSON form and would not survive storage), and an integer is an ``int``
(``2.0`` is a number, not an integer: Python code that gets it would see a float).
"""

from __future__ import annotations

import math
from typing import Any

from jsonschema import Draft202012Validator

VALUE_TYPES = ("string", "number", "integer", "boolean", "object", "array", "any")


def _is_number(checker, value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_integer(checker, value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


TYPE_CHECKER = Draft202012Validator.TYPE_CHECKER.redefine_many(
    {"number": _is_number, "integer": _is_integer}
)


def type_schema(type_name: str) -> dict[str, Any]:
    """The JSON Schema of ``type_name``: ``{"type": name}``, or ``{}`` (anything) for ``any``."""
    if type_name not in VALUE_TYPES:
        raise ValueError(f"value type {type_name!r} is not one of {', '.join(VALUE_TYPES)}")
    return {} if type_name == "any" else {"type": type_name}


def fits(type_name: str, value: Any) -> bool:
    """Whether ``value`` is of type ``type_name`` (one of ``VALUE_TYPES``)."""
    if type_name == "any":
        return True
    if type_name not in VALUE_TYPES:
        raise ValueError(f"value type {type_name!r} is not one of {', '.join(VALUE_TYPES)}")
    return TYPE_CHECKER.is_type(value, type_name)


def json_type(value: Any) -> str:
    """The ``VALUE_TYPES`` name of a value (``null`` for None), as error messages show it."""
    if value is None:
        return "null"
    for name in ("boolean", "integer", "number", "string", "array", "object"):
        if TYPE_CHECKER.is_type(value, name):
            return name
    if isinstance(value, float):
        return "number"  # NaN or an infinity: a float, if not a JSON number
    return type(value).__name__


def article(type_name: str) -> str:
    """``type_name`` with its article, for messages: "an integer", "a string", "any value"."""
    return {"any": "any value", "integer": "an integer", "object": "an object",
            "array": "an array"}.get(type_name, f"a {type_name}")
