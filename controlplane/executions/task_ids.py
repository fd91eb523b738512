"""The Celery task ids of every task a run published, kept so that a cancel can revoke them.

`dispatch.publish` records the ids of a canvas (every task of it: chain links, chord members and
bodies, frozen before it is sent) here just before it sends the first message; a cancel reads
them back (`run_task_ids`) and revokes them. A retry (`task.retry`) and a lost attempt published
again (`dispatch.republish`) keep their task id, so they are covered by the id recorded once.

Where: on a Redis broker, a set per run in the broker's own Redis (`flowplane:run-tasks:<id>`),
written with one pipelined SADD + EXPIRE on the connection the publish then uses: one round trip
per publish and nothing in PostgreSQL, where a row per task (a fan-out of 100 writes 102) would
add an INSERT to the start's hot path and a table that needs pruning. The set expires
`EXECUTION_TASK_IDS_TTL_S` after the run's last publish; past that nothing of the run is left in
the broker to revoke (the longest countdown is minutes), and the claims, which refuse any step of
a run that is not running, stay the guarantee. On any other broker (the embedded `atomicfs://`
default, where every process shares the broker's folder) the ids are appended to a file per run
under `EXECUTION_TASK_IDS_DIR` (never pruned: that default is one machine's demo and tests).
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable

from django.conf import settings

KEY_PREFIX = "flowplane:run-tasks:"


def _key(execution_id) -> str:
    return f"{KEY_PREFIX}{execution_id}"


@contextmanager
def _redis_client(connection):
    """A Redis client on a kombu connection to a Redis broker (None on another broker): the
    channel's synchronous pool, as kombu's own LPUSH uses, not `channel.client`, whose connection
    may be waiting on a BRPOP of the channel's consumers (broadcast replies)."""
    if connection.transport.driver_type != "redis":
        yield None
        return
    with connection.default_channel.conn_or_acquire() as client:
        yield client


def _file(execution_id) -> Path:
    return Path(settings.EXECUTION_TASK_IDS_DIR) / str(execution_id)


def task_ids_record(execution_id, task_ids: Iterable[str], connection) -> None:
    """Remember `task_ids` as tasks of the run, through `connection` (a kombu connection to the
    broker the tasks go to): one round trip on Redis."""
    ids = [task_id for task_id in task_ids if task_id]
    if not ids:
        return
    with _redis_client(connection) as client:
        if client is not None:
            pipe = client.pipeline(transaction=False)
            pipe.sadd(_key(execution_id), *ids)
            pipe.expire(_key(execution_id), int(settings.EXECUTION_TASK_IDS_TTL_S))
            pipe.execute()
            return
    path = _file(execution_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    # One write of whole lines in append mode: concurrent publishers of a run never interleave.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, ("\n".join(ids) + "\n").encode())
    finally:
        os.close(fd)


def run_task_ids(execution_id) -> set[str]:
    """Every task id recorded for the run (empty once they expired)."""
    from controlplane.core.celery_app import app

    with app.pool.acquire(block=True) as connection, _redis_client(connection) as client:
        if client is not None:
            return {member.decode() if isinstance(member, bytes) else member
                    for member in client.smembers(_key(execution_id))}
    try:
        return {line for line in _file(execution_id).read_text().splitlines() if line}
    except FileNotFoundError:
        return set()
