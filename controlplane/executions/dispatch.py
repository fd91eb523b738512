"""Everything the control plane publishes for the engine, by task name (the tasks live in `workers`).

A compiled canvas plan (`pipelines.canvas`, stored on the execution) becomes Celery signatures
(a fused run of steps, `StepsTask`, is one `flowplane.steps` task);
a lost attempt's stored request is published again (`republish`).

Every signature is immutable (`.si()`): tasks take ids and read their inputs from PostgreSQL, so
no return value flows between tasks. Steps and merges go to their group's queue with the node's
`timeout_s` as soft limit (hard limit a little later); barriers and the finish go to the queue of
the run's first step, so no extra control-plane worker is needed. The last task of the canvas
(the one that runs after every other) carries `final=True` and the run's finish task id: it
finishes the run itself, and only its result goes to the result backend (besides chord header
parts where the backend joins chords through stored results: `chord_parts_need_results`).

Everything of a run goes out through `publish`, which records the ids of every task it sends
(`task_ids`) so that a cancel can revoke them.
"""
from __future__ import annotations

from typing import Any

from celery import chain, chord, group
from celery.app.task import Context
from celery.canvas import Signature, _chain
from celery.utils import uuid

from controlplane.core.celery_app import app
from controlplane.core.telemetry import continued_trace
from controlplane.executions.services.attempts import hard_time_limit
from controlplane.executions.task_ids import task_ids_record
from pipelines.canvas import Barrier, Chain, Chord, MergeTask, StepsTask, StepTask, iter_tasks, plan_from_dict


def publish(execution_id, signature: Signature):
    """Send `signature` (any canvas) for run `execution_id`, having recorded the id of every task
    in it, so a cancel can revoke them; the AsyncResult of its last task.

    Every task gets its id up front (`canvas_task_ids`): chain links, chord members and bodies (a
    chord's own id is not its members': revoking it would cancel nothing); Celery keeps an id a
    task already has when it sends the canvas. The ids are recorded before the first message goes
    out, so no task of the run can run untracked; a publish that then fails leaves ids that name
    nothing, which is harmless.
    """
    task_ids = canvas_task_ids(signature)
    with app.pool.acquire(block=True) as connection:
        task_ids_record(execution_id, task_ids, connection)
    return signature.apply_async()


def canvas_task_ids(signature) -> list[str]:
    """The id of every task of a canvas, depth first (chords: members, then the body), giving one
    to each task that has none yet: what `freeze()` would assign, without the rest of its work
    (root and parent ids, chord bookkeeping), which sending the canvas does anyway."""
    out: list[str] = []
    stack = [signature]
    while stack:
        item = stack.pop()
        if not isinstance(item, Signature):  # a canvas read back from its dict form
            raise TypeError(f"publish takes Signature objects, not {type(item).__name__}: {item!r}")
        if isinstance(item, (_chain, group)):
            stack.extend(reversed(list(item.tasks)))
        elif isinstance(item, chord):
            header = item.tasks.tasks if isinstance(item.tasks, group) else item.tasks
            stack.append(item.body)
            stack.extend(reversed(list(header)))
        else:
            out.append(item.options.setdefault("task_id", uuid()))
    return out


def finish_task_id(execution_id) -> str:
    """The finish task's id is derived from the run's, so anyone (Flower, a script, the benchmark)
    can wait on a run's end in the result backend without asking the control plane first."""
    return f"flowplane-finish-{execution_id}"


def build_signature(execution_id: str, canvas_dict: dict[str, Any], queues: dict[str, str]):
    """The Celery canvas of one run. `queues` maps group slug -> queue name;
    `canvas_dict.get("timeouts")` maps node id -> timeout_s."""
    plan = plan_from_dict(canvas_dict)
    timeouts = canvas_dict.get("timeouts") or {}
    first = next(task for task in iter_tasks(plan) if isinstance(task, (StepTask, StepsTask)))
    control = queues[first.group]

    def limits(node: str) -> dict[str, float]:
        timeout = timeouts.get(node)
        return {"soft_time_limit": float(timeout), "time_limit": hard_time_limit(timeout)} if timeout else {}

    last = _last_task(plan.root)

    keep_header_results = chord_parts_need_results()

    def options(item, in_header: bool) -> dict[str, Any]:
        # The task that runs after every other one finishes the run; its id is the run's finish id,
        # and its result is the one result kept. The others' results are never read (the store
        # holds outputs), except a chord header's, which backends without native chords poll.
        if item is last:
            return {"kwargs": {"final": True}, "task_id": finish_task_id(execution_id)}
        return {} if in_header and keep_header_results else {"ignore_result": True}

    def convert(item, in_header: bool = False):
        if isinstance(item, StepTask):
            return app.signature("flowplane.step", args=(execution_id, item.node, item.shard, item.shards),
                             immutable=True, queue=queues[item.group], **limits(item.node), **options(item, in_header))
        if isinstance(item, StepsTask):
            # No time limit: only steps without a timeout_s of their own are fused (`start_canvas`).
            return app.signature("flowplane.steps", args=(execution_id, list(item.nodes)),
                             immutable=True, queue=queues[item.group], **options(item, in_header))
        if isinstance(item, MergeTask):
            return app.signature("flowplane.merge", args=(execution_id, item.node, item.shards),
                             immutable=True, queue=queues[item.group], **options(item, in_header))
        if isinstance(item, Barrier):
            return app.signature("flowplane.barrier", args=(execution_id, item.label), immutable=True, queue=control,
                             **options(item, in_header))
        if isinstance(item, Chain):
            return chain(*[convert(sub, in_header) for sub in item.items])
        if isinstance(item, Chord):
            return chord([convert(sub, True) for sub in item.header], convert(item.body, in_header))
        raise ValueError(f"unknown canvas item {item!r}")

    return convert(plan.root)


def chord_parts_need_results() -> bool:
    """Whether a chord header part's result must be stored for its chord to complete.

    Redis counts a chord's parts itself: each part's return (`on_chord_part_return`, called by
    Celery whether or not the part's result is ignored) adds its state to the chord's own list
    and fires the body when all are in; the separate result key it would also write (a SET and a
    PUBLISH per part) is never read, since every header of a plan is made of tasks, chains and
    chords, never of bare groups (the one case Redis joins through stored results). Other backends
    (the embedded file backend) join a chord by polling its parts' stored results.
    """
    from celery.backends.redis import RedisBackend

    return not isinstance(app.backend, RedisBackend)


def _last_task(item):
    """The task that runs after every other one: a chain's last item's, a chord's body's."""
    if isinstance(item, Chain):
        return _last_task(item.items[-1])
    if isinstance(item, Chord):
        return _last_task(item.body)
    return item


def finish_signature(execution_id: str, queue: str):
    """The stand-alone finish, for when the last task found a node still pending."""
    return app.signature("flowplane.finish", args=(execution_id,), immutable=True, queue=queue)


def saga_signature(execution_id: str, queue: str):
    """The saga's start, on the queue of the step whose failure triggered it."""
    return app.signature("flowplane.saga", args=(execution_id,), immutable=True, queue=queue)


def compensation_signature(execution_id: str, plan: list[tuple[int, str]], finish_queue: str):
    """chain(compensate(run) on its queue ..., saga_finish): `plan` is already in undo order."""
    finish = app.signature("flowplane.saga_finish", args=(execution_id,), immutable=True, queue=finish_queue)
    steps = [app.signature("flowplane.compensate", args=(execution_id, run_id), immutable=True, queue=queue)
             for run_id, queue in plan]
    return chain(*steps, finish) if steps else finish


def republish(request: dict[str, Any], queue: str, *, countdown: float = 0.0):
    """Publish a stored request (`workers.routing.request_fields`) again to `queue`, keeping its
    task id and canvas options (chain, chord, group, callbacks), as Celery's own
    `Task.signature_from_request` does for a retry, by task name; due after `countdown` seconds. Not
    through `publish`: the task id, and those of the canvas it carries on, were recorded when the
    canvas was published."""
    fields = {k: v for k, v in request.items() if k != "task"}
    if fields.get("timelimit"):
        fields["timelimit"] = tuple(fields["timelimit"])
    context = Context(fields)
    options = {**context.as_execution_options(), "ignore_result": bool(fields.get("ignore_result")), "queue": queue}
    if countdown > 0:
        options["countdown"] = countdown
    priority = (context.delivery_info or {}).get("priority")
    if priority is not None:
        options["priority"] = priority
    with continued_trace(fields):  # the redelivery stays in the run's trace
        return app.signature(request["task"], args=context.args, kwargs=context.kwargs, options=options).apply_async()
