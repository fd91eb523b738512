"""Step types: a registry keyed by type name, and the built-in types.

Importing this package registers the built-ins: ``noop``, ``log``, ``python``, ``http``,
``jq``, ``condition``, ``delay``, ``fail``, ``notify``, and the gates ``approval`` and ``map`` (and the
allow-listed python callables).
"""

from pipelines.steps.base import Field, StepContext, StepType
from pipelines.steps.registry import (
    StepSpec,
    get_step_type,
    is_step_type,
    register_step_type,
    render_step_config,
    run_step,
    step_type_names,
    unregister_step_type,
)
from pipelines.steps.python import callable_names, get_callable, register_callable

# Imported for their registration side effects.
from pipelines.steps import builtin as _builtin  # noqa: F401,E402
from pipelines.steps import http as _http  # noqa: F401,E402
from pipelines.steps import builtin_callables as _builtin_callables  # noqa: F401,E402
from pipelines.steps import landing as _landing  # noqa: F401,E402
from pipelines.steps import notify as _notify  # noqa: F401,E402
from pipelines.steps import approval as _approval  # noqa: F401,E402
from pipelines.steps import map as _map  # noqa: F401,E402

__all__ = [
    "Field",
    "StepContext",
    "StepSpec",
    "StepType",
    "callable_names",
    "get_callable",
    "get_step_type",
    "is_step_type",
    "register_callable",
    "register_step_type",
    "render_step_config",
    "run_step",
    "step_type_names",
    "unregister_step_type",
]
