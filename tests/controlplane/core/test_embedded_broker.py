"""The embedded broker and result backend: readers never see a half-written file.

Producers in other processes write large messages while consumers read them, as beat and the web
publish while the worker polls; every message arrives once, whole. The exchange table (fan-out
bindings) survives concurrent binds, and the result backend's files are whole whenever they exist.
"""
from __future__ import annotations

import multiprocessing
import os
import threading
import time
from queue import Empty

import pytest
from kombu import Connection

from controlplane.core import embedded_broker

embedded_broker.register()

PAYLOAD_BYTES = 256 * 1024  # large enough that a write takes several system calls


def _options(folder) -> dict:
    options = {
        "data_folder_in": str(folder / "queue"),
        "data_folder_out": str(folder / "queue"),
        "processed_folder": str(folder / "processed"),
        "control_folder": str(folder / "control"),
        "store_processed": False,
    }
    for key in ("data_folder_in", "processed_folder", "control_folder"):
        os.makedirs(options[key], exist_ok=True)
    return options


def _produce(options: dict, producer: int, count: int) -> None:
    with Connection("atomicfs://", transport_options=options) as conn:
        queue = conn.SimpleQueue("soak")
        for n in range(count):
            queue.put({"id": f"{producer}-{n}", "blob": "x" * PAYLOAD_BYTES})
        queue.close()


def _consume(options: dict, producers_done, results, deadline_s: float) -> None:
    """Take messages until the producers are done and the queue is empty (or the deadline)."""
    got = []
    deadline = time.monotonic() + deadline_s
    with Connection("atomicfs://", transport_options=options) as conn:
        queue = conn.SimpleQueue("soak")
        while time.monotonic() < deadline:
            try:
                message = queue.get(timeout=0.2)
            except Empty:
                if producers_done.is_set():
                    break
                continue
            body = message.payload
            assert len(body["blob"]) == PAYLOAD_BYTES, f"message {body['id']} was cut short"
            message.ack()
            got.append(body["id"])
        queue.close()
    results.put(got)


def test_messages_written_by_other_processes_arrive_whole_and_once(tmp_path):
    options = _options(tmp_path)
    producers, per_producer = 3, 40
    context = multiprocessing.get_context("spawn")
    results, producers_done = context.Queue(), context.Event()
    # Two competing consumers read while three producers write.
    consumers = [context.Process(target=_consume, args=(options, producers_done, results, 90)) for _ in range(2)]
    writers = [context.Process(target=_produce, args=(options, p, per_producer)) for p in range(producers)]
    for process in consumers + writers:
        process.start()
    for writer in writers:
        writer.join(timeout=60)
        assert writer.exitcode == 0
    producers_done.set()
    ids = []
    for _ in consumers:
        ids.extend(results.get(timeout=100))
    for consumer in consumers:
        consumer.join(timeout=10)
        assert consumer.exitcode == 0, "a consumer failed reading a message"
    expected = [f"{p}-{n}" for p in range(producers) for n in range(per_producer)]
    assert sorted(ids) == sorted(expected), "a message was lost or delivered twice"
    assert os.listdir(options["data_folder_in"]) == [], "temporary or unread files left behind"


def test_a_temporary_file_is_never_taken_for_a_message(tmp_path):
    options = _options(tmp_path)
    # What a writer in the middle of its write leaves in the folder: a partial file, temp-named.
    (tmp_path / "queue" / f"{embedded_broker.TEMP_PREFIX}abc").write_bytes(b'{"body": "trunc')
    with Connection("atomicfs://", transport_options=options) as conn:
        queue = conn.SimpleQueue("soak")
        with pytest.raises(Empty):
            queue.get(timeout=0.3)
        queue.put({"id": "whole"})
        assert queue.get(timeout=2).payload == {"id": "whole"}
        queue.close()


def _bind(options: dict, n: int) -> None:
    with Connection("atomicfs://", transport_options=options) as conn:
        channel = conn.channel()
        channel._queue_bind("fanout-ex", "", "", f"q{n}")
        channel.close()


def test_concurrent_binds_keep_a_whole_exchange_table(tmp_path):
    options = _options(tmp_path)
    context = multiprocessing.get_context("spawn")
    binders = [context.Process(target=_bind, args=(options, n)) for n in range(8)]
    for binder in binders:
        binder.start()
    for binder in binders:
        binder.join(timeout=60)
        assert binder.exitcode == 0
    with Connection("atomicfs://", transport_options=options) as conn:
        channel = conn.channel()
        assert sorted(q.queue for q in channel.get_table("fanout-ex")) == sorted(f"q{n}" for n in range(8))
        channel._delete("q3", "fanout-ex", "", "")
        assert "q3" not in {q.queue for q in channel.get_table("fanout-ex")}
        channel.close()


def test_an_exchange_name_that_walks_out_of_the_folder_is_refused(tmp_path):
    from kombu.exceptions import ChannelError

    with Connection("atomicfs://", transport_options=_options(tmp_path)) as conn:
        channel = conn.channel()
        with pytest.raises(ChannelError):
            channel._queue_bind("../escape", "", "", "q")
        channel.close()
    assert not (tmp_path / "escape.exchange").exists()


def test_result_files_are_whole_whenever_a_reader_sees_them(tmp_path):
    from workers.celery import app

    backend = embedded_broker.AtomicFilesystemBackend(app=app, url=f"atomicfile://{tmp_path}")
    values = [bytes([65 + n]) * PAYLOAD_BYTES for n in range(4)]
    stop = threading.Event()
    bad = []

    def write():
        n = 0
        while not stop.is_set():
            backend.set(b"celery-task-meta-x", values[n % len(values)])
            n += 1

    writer = threading.Thread(target=write)
    writer.start()
    try:
        deadline = time.monotonic() + 3
        reads = 0
        while time.monotonic() < deadline:
            value = backend.get(b"celery-task-meta-x")
            if value is not None:
                reads += 1
                if value not in values:
                    bad.append(len(value))
    finally:
        stop.set()
        writer.join(timeout=10)
    assert reads > 0
    assert bad == [], f"{len(bad)} partial reads"
    assert os.listdir(tmp_path) == ["celery-task-meta-x"]
