"""The worker's consumer: Celery's, surviving a broker restart it would otherwise die of.

On a lost broker connection Celery (5.7) collects the connection (its transport client becomes
None) and then closes it. Two things then touch the collected connection and raise
`AttributeError: 'NoneType' object has no attribute 'hostname'`, which neither `ignore_errors` nor
the connection-error tuples catch, so the worker shuts down ("Unrecoverable error") and a group
with one worker stalls until someone restarts it (seen on nearly every Redis restart by
bench/chaos.py):

- closing the Redis channel tries to put the unacknowledged messages back through it;
- a task that finishes meanwhile acknowledges (or rejects) its message on the old channel.

Both may fail here instead: the messages stay in Redis's unacked set, where the offline sweep's
restore or the visibility timeout hands them back (the claims make the redelivery harmless), and
the watchdog re-drives any run that stalled meanwhile. Any other AttributeError still raises.
"""
from __future__ import annotations

import logging

from celery.worker.consumer import Consumer as CeleryConsumer
from kombu.message import Message

logger = logging.getLogger(__name__)


class Consumer(CeleryConsumer):
    def on_connection_error_after_connected(self, exc):
        connection = self.connection
        if connection is not None:
            close = connection.close

            def close_or_let_go():
                try:
                    close()
                except AttributeError as error:
                    logger.warning("broker.close_after_connection_loss_failed", extra={"error": repr(error)})

            connection.close = close_or_let_go
        return super().on_connection_error_after_connected(exc)


def _connection_collected(message: Message) -> bool:
    connection = getattr(message.channel, "connection", None)
    return connection is None or getattr(connection, "client", None) is None


def _let_go_when_collected(settle):
    def settle_or_let_go(self, logger, errors, *args, **kwargs):
        try:
            return settle(self, logger, errors, *args, **kwargs)
        except AttributeError:
            if not _connection_collected(self):
                raise
            logger.warning("broker.settle_after_connection_loss_failed: message %r stays unacknowledged "
                           "and is handed back", self.delivery_tag)
            return None

    settle_or_let_go.__wrapped__ = settle
    return settle_or_let_go


if not hasattr(Message.ack_log_error, "__wrapped__"):
    Message.ack_log_error = _let_go_when_collected(Message.ack_log_error)
    Message.reject_log_error = _let_go_when_collected(Message.reject_log_error)
