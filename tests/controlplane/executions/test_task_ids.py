"""Tracking a run's Celery task ids (for cancel): every task of a canvas gets its id before it is
sent (what freezing would assign), the messages carry exactly those, and `publish` records them,
in the test's own Redis, before the first message goes out."""
from __future__ import annotations

import base64
import json
import uuid

import pytest
import redis
from django.conf import settings
from kombu import Connection

from controlplane.core.celery_app import app
from controlplane.executions.dispatch import (
    build_signature,
    canvas_task_ids,
    compensation_signature,
    finish_task_id,
    publish,
)
from controlplane.executions.task_ids import KEY_PREFIX, run_task_ids, task_ids_record
from pipelines.canvas import CanvasNode, compile_canvas

# Each shape nests differently: chains in chord headers, chords in chord bodies, replicated nodes
# (a chord of shards and a merge) inside a header, an N shape run in layers (chords of chords).
SHAPES = {
    "chain": ([CanvasNode(n) for n in "abc"], [("a", "b"), ("b", "c")]),
    "fan-in-at-root": ([CanvasNode(n) for n in "abc"], [("a", "c"), ("b", "c")]),
    "diamond-with-replicas": (
        [CanvasNode("a"), CanvasNode("b", replicas=3), CanvasNode("c"), CanvasNode("d"), CanvasNode("e")],
        [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d"), ("d", "e")]),
    "nested-forks": (
        [CanvasNode(n) for n in "abcdefgh"],
        [("a", "b"), ("a", "c"), ("b", "d"), ("b", "e"), ("d", "f"), ("e", "f"), ("f", "h"), ("c", "g"),
         ("g", "h")]),
    "n-shape-layers": ([CanvasNode(n) for n in "abcd"], [("a", "c"), ("a", "d"), ("b", "d")]),
    "wide-fan-out": ([CanvasNode("s"), CanvasNode("fan", replicas=50), CanvasNode("t")], [("s", "fan"), ("fan", "t")]),
}


def _signature(shape: str, execution_id: str, queue: str = "wg.acme.ingest"):
    nodes, edges = SHAPES[shape]
    plan = compile_canvas(nodes, edges)
    return plan, build_signature(execution_id, plan.to_dict(), {None: queue})


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_every_task_of_a_canvas_gets_an_id_and_all_are_collected(shape):
    plan, sig = _signature(shape, "run-1")

    ids = canvas_task_ids(sig)

    assert len(ids) == plan.task_count == len(set(ids))
    assert all(ids) and finish_task_id("run-1") in ids
    assert canvas_task_ids(sig) == ids  # given once: asking again changes nothing


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_the_ids_are_the_ones_freezing_keeps(shape):
    """Celery freezes a canvas as it sends it; a task that has an id keeps it."""
    _, sig = _signature(shape, "run-1")
    ids = canvas_task_ids(sig)

    sig.freeze()

    assert canvas_task_ids(sig) == ids


def _sent_ids(sig) -> tuple[str, set[str]]:
    """(the first message's id, every task id the sent messages carry), sent to an in-memory broker."""
    sent = []
    original = app.amqp.send_task_message

    def capture(producer, name, message, **kwargs):
        sent.append(message)
        return original(producer, name, message, **kwargs)

    app.amqp.send_task_message = capture
    try:
        with Connection("memory://") as connection:
            sig.apply_async(connection=connection)
    finally:
        app.amqp.send_task_message = original
    carried = {message.headers["id"] for message in sent}
    for message in sent:
        carried |= _leaf_task_ids(message.body)
    return sent[0].headers["id"], carried


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_the_ids_collected_are_the_ids_the_messages_carry(shape):
    """What the workers will see: the first message's id and every task id its chain and chord
    options carry (a chord's own id and its header group's are not tasks, so not collected), the
    same number Celery sends for the canvas left to itself."""
    _, sig = _signature(shape, "run-2")
    collected = canvas_task_ids(sig)

    first, carried = _sent_ids(sig)

    assert first == collected[0] and carried == set(collected)
    _, untouched = _signature(shape, "run-2")
    assert len(_sent_ids(untouched)[1]) == len(carried)


def _leaf_task_ids(value) -> set[str]:
    out: set[str] = set()
    if isinstance(value, dict):
        if "task" in value and "options" in value and not value["task"].startswith("celery."):
            out.add(value["options"]["task_id"])
        for item in value.values():
            out |= _leaf_task_ids(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            out |= _leaf_task_ids(item)
    return out


@pytest.fixture
def test_redis():
    if not settings.CELERY_BROKER_URL.startswith("redis://"):
        pytest.skip("needs the test's Redis broker (bin/test)")
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    if client.connection_pool.connection_kwargs.get("db", 0) == 0:
        pytest.fail("tests must use a Redis database number other than 0 (set TEST_REDIS_DB)")
    return client


def _queued_ids(client, queue: str) -> set[str]:
    ids = set()
    for raw in client.lrange(queue, 0, -1):
        message = json.loads(raw)
        ids.add(message["headers"]["id"])
        ids |= _leaf_task_ids(json.loads(base64.b64decode(message["body"])))
    return ids


def test_publish_records_every_task_of_the_canvas_in_redis_with_a_ttl(test_redis):
    execution_id = str(uuid.uuid4())
    queue = f"test.cancel.{uuid.uuid4().hex[:8]}"  # nobody consumes it: the messages stay for us to read
    _, sig = _signature("fan-in-at-root", execution_id, queue)
    try:
        publish(execution_id, sig)

        tracked = run_task_ids(execution_id)
        assert tracked == set(canvas_task_ids(sig)) and len(tracked) == 3
        assert _queued_ids(test_redis, queue) <= tracked  # both header members and the body they carry
        ttl = test_redis.ttl(KEY_PREFIX + execution_id)
        assert 0 < ttl <= settings.EXECUTION_TASK_IDS_TTL_S
    finally:
        test_redis.delete(queue, KEY_PREFIX + execution_id)


def test_later_publishes_of_a_run_add_to_its_ids(test_redis):
    """A re-drive, a finish or a saga: each publish adds its tasks; nothing recorded is dropped."""
    execution_id = str(uuid.uuid4())
    queue = f"test.cancel.{uuid.uuid4().hex[:8]}"
    try:
        _, first = _signature("chain", execution_id, queue)
        publish(execution_id, first)
        _, again = _signature("chain", execution_id, queue)
        publish(execution_id, again)
        saga = compensation_signature(execution_id, [(1, queue), (2, queue)], queue)
        publish(execution_id, saga)

        tracked = run_task_ids(execution_id)
        expected = set(canvas_task_ids(first)) | set(canvas_task_ids(again)) | set(canvas_task_ids(saga))
        assert tracked == expected and len(tracked) == 3 + 3 - 1 + 3  # the finish id is the same twice
    finally:
        test_redis.delete(queue, KEY_PREFIX + execution_id)


def test_another_runs_ids_are_not_mixed_in(test_redis):
    mine, theirs = str(uuid.uuid4()), str(uuid.uuid4())
    with app.pool.acquire(block=True) as connection:
        task_ids_record(mine, ["a", "b"], connection)
        task_ids_record(theirs, ["c"], connection)
        task_ids_record(mine, [], connection)  # nothing to record: no write, no error
    try:
        assert run_task_ids(mine) == {"a", "b"} and run_task_ids(theirs) == {"c"}
        assert run_task_ids(str(uuid.uuid4())) == set()
    finally:
        test_redis.delete(KEY_PREFIX + mine, KEY_PREFIX + theirs)


def test_on_a_broker_without_redis_the_ids_go_to_a_file_per_run(settings, tmp_path):
    settings.EXECUTION_TASK_IDS_DIR = str(tmp_path / "run-tasks")
    with Connection("memory://") as connection:
        task_ids_record("run-9", ["x", "y"], connection)
        task_ids_record("run-9", ["z"], connection)
    assert (tmp_path / "run-tasks" / "run-9").read_text().splitlines() == ["x", "y", "z"]
