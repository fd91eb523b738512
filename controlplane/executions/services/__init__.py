"""Writes of the executions app (the only code that changes executions, step runs and events)."""
from controlplane.executions.services.attempts import Delivery, Outcome
from controlplane.executions.services.events import event_append, locked_execution
from controlplane.executions.services.recovery import (
    lost_work_recover,
    step_runs_expire,
    step_runs_recover_lost,
    step_runs_recover_orphaned,
    worker_replaced_recover,
)
from controlplane.executions.services.dead_letters import (
    DeadLetterReplay,
    dead_letter_discard,
    dead_letter_replay,
    dead_letter_rerun_execute,
    dead_letters_replay_bulk,
)
from controlplane.executions.services.replay import execution_replay
from controlplane.executions.services.saga import compensation_execute, saga_finish, saga_start
from controlplane.executions.services.start import (
    execution_queues,
    execution_start,
)
from controlplane.executions.services.cancel import execution_cancel
from controlplane.executions.services.watchdog import executions_redrive_stalled
from controlplane.executions.services.steps import (
    barrier_execute,
    execution_finish,
    fail_execution,
    merge_execute,
    step_execute,
    step_idempotency_key,
)

__all__ = [
    "Delivery",
    "Outcome",
    "barrier_execute",
    "compensation_execute",
    "DeadLetterReplay",
    "dead_letter_discard",
    "dead_letter_replay",
    "dead_letter_rerun_execute",
    "dead_letters_replay_bulk",
    "execution_replay",
    "event_append",
    "execution_cancel",
    "execution_finish",
    "execution_queues",
    "execution_start",
    "executions_redrive_stalled",
    "fail_execution",
    "locked_execution",
    "lost_work_recover",
    "merge_execute",
    "saga_finish",
    "saga_start",
    "step_execute",
    "step_idempotency_key",
    "step_runs_expire",
    "step_runs_recover_lost",
    "step_runs_recover_orphaned",
    "worker_replaced_recover",
]
