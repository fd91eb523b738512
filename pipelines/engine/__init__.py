"""The engine's pure core: a run's graph as typed values, the rules read from what it recorded,
and the one decider every claim calls (steps locked and lock-free, compensations).

Modules: ``graph`` (ExecutionGraph, Job, Edge), ``history`` (AttemptRecord, Snapshot, state,
skip, predecessor and template-context rules), ``limits`` (hard time limits, waits),
``decider`` (decide, settle, decide_finish). No framework imports: the control plane reads and
writes the store, computes the facts only the OS or the database knows, and passes plain values.
"""
from pipelines.engine.decider import (  # noqa: F401
    DEAD_LETTER,
    DEFER,
    DONE,
    FAIL,
    FINISH,
    IGNORE,
    RETRY,
    RUN,
    SKIP,
    WAIT,
    Decision,
    DeliveryFacts,
    Loss,
    decide,
    decide_finish,
    idempotency_key,
    settle,
)
from pipelines.engine.graph import Edge, ExecutionGraph, Job  # noqa: F401
from pipelines.engine.history import AttemptRecord, Snapshot  # noqa: F401
