"""What a dead worker held goes back on its queues: only its queues' unacknowledged messages,
delivered before it could have died, and not those re-published already."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from workers.celery import app
from controlplane.executions.redelivery import unacked_restore

pytestmark = pytest.mark.e2e


def _held(channel, queue: str, task_id: str):
    """A message on `queue`, received and not acknowledged (as a worker holds one)."""
    app.send_task("flowplane.noop-for-test", task_id=task_id, queue=queue)
    message = channel.basic_get(queue, no_ack=False)
    assert message is not None and message.headers["id"] == task_id
    return message


def test_only_the_dead_workers_queues_messages_from_before_its_death_and_not_republished_go_back(redis_test_db):
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        _held(channel, "wg.t.dead", "dead-1")
        _held(channel, "wg.t.dead", "dead-republished")
        _held(channel, "wg.t.alive", "alive-1")
        died = timezone.now()
        _held(channel, "wg.t.dead", "after-death")

        restored = unacked_restore({"wg.t.dead"}, died, skip_task_ids={"dead-republished"})

        assert restored == 1
        back = channel.basic_get("wg.t.dead", no_ack=True)
        assert back.headers["id"] == "dead-1" and channel.basic_get("wg.t.dead", no_ack=True) is None
        ours = {"dead-1", "dead-republished", "alive-1", "after-death"}
        # Earlier tests' killed workers may have left messages of their own held in the same database.
        still_held = {_task_id(value) for value in redis_test_db.hvals("unacked")} & ours
        assert still_held == {"dead-republished", "alive-1", "after-death"}
    assert unacked_restore({"wg.t.dead"}, died - timedelta(days=1)) == 0


def _task_id(raw: bytes) -> str:
    message, _exchange, _routing_key = json.loads(raw)
    return message["headers"]["id"]
