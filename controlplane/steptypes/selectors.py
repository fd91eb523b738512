"""Reads of the step-type registry, as the API shows it."""
from __future__ import annotations

from typing import Any

from controlplane.core.errors import NotFound
from pipelines.steps import get_step_type, is_step_type, step_type_names


def step_type_list() -> list[dict[str, Any]]:
    """Every registered step type's description (`StepType.describe`), sorted by name."""
    return [type(get_step_type(name)).describe() for name in step_type_names()]


def step_type_get(*, name: str) -> dict[str, Any]:
    if not is_step_type(name):
        raise NotFound(f"no step type {name!r}; GET /api/v1/step-types lists them", path="type")
    return type(get_step_type(name)).describe()
