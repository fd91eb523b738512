"""flowplane's pure domain core: graph model, validation, diff, templating and step types.

Depends on the standard library and ``jq`` only (PyYAML lazily, for YAML documents); never on
Django or Celery. Modules: ``errors``, ``graph`` (model, documents, digest), ``structure``
(structural checks), ``validation``, ``diff``, ``templating``, ``steps`` (registry and
built-in step types).
"""

from pipelines.errors import (  # noqa: F401
    CycleError,
    GraphError,
    Issue,
    PipelineError,
    StepConfigError,
    StepFailed,
    TemplateError,
)
