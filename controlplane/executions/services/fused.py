"""A fused run of steps: several side-effect-free nodes in one task, one after another.

The canvas runs such a run as one `flowplane.steps` task instead of one task per node, sparing a
broker round trip (publish, deliver, ack) per step, the engine's largest cost over bare Celery:
consecutive nodes of a chain (`pipelines.canvas.fuse_steps`), and slices of the parts of a wide
chord header (`pipelines.canvas.pack_headers`; the siblings are unrelated, so any order keeps
every edge). Each node still goes through `step_execute`, with its own claim, attempt, events
and retry policy; the task stops at the first outcome that is not "done", exactly where the
unfused chain would have stopped (a packed sibling after it then runs with the task's retry):

- wait / retry: the task is retried; its next delivery walks the nodes again, and the ones
  recorded already answer "already recorded" from the store, so only the rest runs;
- fail: the step failed for good (the run is compensating), the chain stops;
- ignore: a duplicate or a run that is no longer running, nothing more to do.

Only side-effect-free nodes are fused: each is claimed and recorded in one statement after it ran,
so a task killed half-way leaves every node either recorded or untouched, and the redelivery (or
the watchdog's re-drive of the canvas) runs what is left. Their writes are durable together
(`store.durable_together`): the task waits for one WAL flush before it returns, not one per node.
"""
from __future__ import annotations

from collections.abc import Sequence

from controlplane.executions.services.attempts import Delivery, Outcome
from controlplane.executions.services.steps import step_execute
from controlplane.executions.store import durable_together


def steps_execute(*, execution_id, node_ids: Sequence[str], delivery: Delivery, final: bool = False) -> Outcome:
    """Run `node_ids` (single-shard nodes, in chain or header order) one after another; the first outcome
    that is not "done", or the last node's. `final`: the last node is the canvas's last task."""
    if not node_ids:
        raise ValueError("a fused run of steps needs at least one node id")
    last = len(node_ids) - 1
    outcome = Outcome("done")
    with durable_together():
        for index, node_id in enumerate(node_ids):
            outcome = step_execute(execution_id=execution_id, node_id=node_id, shard=0, shard_count=1,
                                   delivery=delivery, final=final and index == last)
            if outcome.action != "done":
                break
    return outcome
