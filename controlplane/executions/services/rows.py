"""The step path's fixed SQL reads moved to `controlplane.executions.store`; these names stay for
the code and tests that import them from here."""
from controlplane.executions.store import (  # noqa: F401
    RUN_COLUMNS,
    Columns,
    execution_locked_row,
    execution_row,
    run_progress,
    step_run_rows,
)
