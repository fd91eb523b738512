"""Handing back what a dead worker held, without waiting for Redis's visibility timeout.

With `acks_late`, a message a worker received but never acknowledged stays in the Redis
transport's `unacked` hash until the visibility timeout (an hour by default) puts it back on its
queue. Steps claimed as running are re-published by the lost-step recovery; everything else a
dead worker held would wait that hour: a step not yet claimed or run inside its transaction, a
merge, a barrier, a finish, and retries waiting for their countdown.

When workers go offline, `unacked_restore` puts back, at once, every unacknowledged message
routed to their queues that was delivered before they could have died (their last heartbeat
plus one heartbeat interval). A live worker of the same group may hold some of those too (a
long step, a retry waiting for its countdown): it gets a duplicate, which the engine's claims
make harmless. Only the Redis transport keeps this hash; with AMQP the broker hands a dead
consumer's messages back by itself, and the embedded file broker has no other consumers.
"""
from __future__ import annotations

import json
import logging
from datetime import datetime

logger = logging.getLogger(__name__)


def unacked_restore(queues: set[str], delivered_before: datetime, *, skip_task_ids: set[str] = frozenset()) -> int:
    """Put back on their queues the unacknowledged messages routed to `queues` and delivered
    before `delivered_before`, except those of `skip_task_ids` (re-published already); returns
    how many. Does nothing unless the broker is Redis."""
    from controlplane.core.celery_app import app

    if not queues:
        return 0
    restored = 0
    with app.connection_for_write() as connection:
        if connection.transport.driver_type != "redis":
            return 0
        channel = connection.default_channel
        client = channel.client
        tags = client.zrangebyscore(channel.unacked_index_key, 0, delivered_before.timestamp())
        for tag in tags:
            held = client.hget(channel.unacked_key, tag)
            if held is None:
                continue  # acknowledged (or restored) meanwhile
            message, _exchange, routing_key = json.loads(held)
            task_id = (message.get("headers") or {}).get("id")
            if routing_key in queues and task_id not in skip_task_ids:
                channel.qos.restore_by_tag(tag, client)  # a transaction: a message acked meanwhile stays acked
                restored += 1
    if restored:
        logger.warning("broker.unacked_restored", extra={"queues": sorted(queues), "count": restored})
    return restored
