"""The embedded default's broker and result backend: files under var/, written atomically.

kombu's `filesystem` transport writes a message file in place (open, lock, write), and its
consumers neither look at the lock nor wait for the writer: a worker that lists the folder while
beat or the web is still writing moves a half-written file away and fails on it with
`JSONDecodeError`, an unrecoverable error that stops the worker (kombu issue #1551). Its exchange
table (the fan-out bindings behind remote control) is created the same way. Celery's `file://`
result backend has the same race between `set` and a `get` polling for a chord or a result.

Here every file is written to a temporary name in its own folder, which no reader matches, then
moved into place with `os.replace`: a reader sees no file or the whole file, never a part of one.
A consumer claims a message by renaming it into the processed folder (same file system, so the
rename is atomic and exactly one consumer wins) instead of `shutil.move` into the system temp
folder, which copies across file systems.

Registered as the broker transport `atomicfs://` and the result backend `atomicfile://<folder>`
(`controlplane/core/celery_app.py` imports this module before the app reads its configuration).
"""
from __future__ import annotations

import os
import tempfile
import uuid
from queue import Empty
from time import monotonic

from celery.app import backends as celery_backends
from celery.backends.filesystem import FilesystemBackend
from kombu import transport as kombu_transport
from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import bytes_to_str, ensure_bytes, str_to_bytes
from kombu.utils.json import dumps, loads

TRANSPORT_ALIAS = "atomicfs"
RESULT_BACKEND_ALIAS = "atomicfile"
# Temporary names start with a dot: the consumer only takes `<stamp>_<uuid>.<queue>.msg`.
TEMP_PREFIX = ".partial-"


def write_atomically(path: str | bytes, data: bytes) -> None:
    """Write `data` to `path` so that readers see either no file or all of it."""
    path = os.fsdecode(path)  # Celery's file backend keeps its paths as bytes
    folder = os.path.dirname(path) or "."
    fd, temp_path = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=folder)
    try:
        with os.fdopen(fd, "wb") as temp:
            temp.write(data)
        os.replace(temp_path, path)
    except BaseException:
        try:
            os.unlink(temp_path)
        except FileNotFoundError:
            pass
        raise


class Channel(filesystem.Channel):
    """kombu's filesystem channel with atomic message and exchange-table files."""

    def _put(self, queue, payload, **kwargs):
        filename = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        path = os.path.join(self.data_folder_out, filename)
        try:
            write_atomically(path, str_to_bytes(dumps(payload)))
        except OSError as exc:
            raise ChannelError(f"cannot add message file {path!r} for queue {queue!r}") from exc

    def _get(self, queue):
        wanted = f"{queue}.msg"
        for filename in sorted(os.listdir(self.data_folder_in)):
            if filename.partition(".")[2] != wanted:
                continue
            source = os.path.join(self.data_folder_in, filename)
            claimed = os.path.join(self.processed_folder, filename)
            try:
                os.rename(source, claimed)
            except FileNotFoundError:
                continue  # another consumer took it first
            try:
                with open(claimed, "rb") as message:
                    payload = message.read()
                if not self.store_processed:
                    os.remove(claimed)
            except OSError as exc:
                raise ChannelError(f"cannot read message file {claimed!r} of queue {queue!r}") from exc
            return loads(bytes_to_str(payload))
        raise Empty()

    def get_table(self, exchange):
        path = self._exchange_file(exchange)
        try:
            return [filesystem.exchange_queue_t(*q) for q in loads(bytes_to_str(path.read_bytes()))]
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise ChannelError(f"cannot read exchange table {path}") from exc

    def _queue_bind(self, exchange, routing_key, pattern, queue):
        binding = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
        self._update_table(exchange, lambda queues: queues if binding in queues else [binding, *queues])

    def _delete(self, queue, exchange, routing_key, pattern, *args, **kwargs):
        # The virtual channel's own bookkeeping, without the base class's in-place table rewrite.
        filesystem.virtual.Channel._delete(self, queue, exchange, routing_key, pattern, *args, **kwargs)
        binding = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
        self._update_table(exchange, lambda queues: [q for q in queues if q != binding])

    def _update_table(self, exchange, change) -> None:
        """Read-modify-write of an exchange table, serialised by a lock file beside it."""
        path = self._exchange_file(exchange)
        self.control_folder.mkdir(parents=True, exist_ok=True)
        try:
            with open(f"{path}.lock", "ab") as lock_file:
                filesystem.lock(lock_file, filesystem.LOCK_EX)
                try:
                    queues = self.get_table(exchange)
                    changed = change(queues)
                    if changed != queues or not path.exists():
                        write_atomically(str(path), str_to_bytes(dumps(changed)))
                finally:
                    filesystem.unlock(lock_file)
        except OSError as exc:
            raise ChannelError(f"cannot update exchange table {path}") from exc


class Transport(filesystem.Transport):
    """kombu's filesystem transport on the atomic channel; no server, folders under var/broker/."""

    Channel = Channel
    # Its own broker state: bindings of this transport are not those of plain `filesystem://`.
    global_state = filesystem.virtual.BrokerState()
    driver_type = TRANSPORT_ALIAS
    driver_name = TRANSPORT_ALIAS


class AtomicFilesystemBackend(FilesystemBackend):
    """Celery's file result backend, with each result written to a temporary name then moved."""

    def _find_path(self, url):
        prefix = f"{RESULT_BACKEND_ALIAS}://"
        if url and url.startswith(prefix):
            return url[len(prefix):]
        return super()._find_path(url)

    def set(self, key, value):
        write_atomically(self._filename(key), ensure_bytes(value))


def register() -> None:
    """Make `atomicfs://` and `atomicfile://` known to kombu and Celery in this process."""
    kombu_transport.TRANSPORT_ALIASES[TRANSPORT_ALIAS] = f"{__name__}:Transport"
    celery_backends.BACKEND_ALIASES[RESULT_BACKEND_ALIAS] = f"{__name__}:AtomicFilesystemBackend"
