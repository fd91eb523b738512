"""Worker side of the fleet: the heartbeat bootstep and flowplane's remote-control commands.

`install_bootsteps(app)` adds `FleetHeartbeat` to the worker blueprint. In the worker's main
process it starts a daemon thread that registers the worker at once and then, every
WORKER_HEARTBEAT_INTERVAL_S seconds, calls `controlplane.fleet.services.worker_heartbeat` with
the queues it is configured for and actually consuming, its pool size, its step types and the
digests in `workers.artifacts`. On a clean shutdown the thread marks the worker stopped. A crash
(kill -9) or a hang stops the beats, and the control plane's sweep marks the worker offline.

The heartbeat never takes the worker down: every beat runs between `close_old_connections()`
calls, errors are logged and the next beat tries again. All database work of this module happens
in the heartbeat thread, never in the consumer's event loop.

Remote-control commands (run in the main process, where the artifact cache lives):

    flowplane_status             -> {hostname, pid, queues, active_consumers, concurrency,
                                     loaded_artifacts, step_types, software_version}
    flowplane_load_artifacts     artifacts=[{job_id, digest, spec}], replace=False
                                 -> {ok, hostname, loaded: {job_id: digest}, artifacts: {all held}}
    flowplane_unload_artifacts   job_ids=[...] (omit for all)
                                 -> {ok, hostname, unloaded: [...], artifacts: {all held}}
    flowplane_artifact_loaded    artifact={job_id, digest, spec}: a pool child of this worker loaded
                                 it on demand; held unless the key holds a digest already (no reply)

Load and unload wake the heartbeat so the database sees the change within a beat, not an interval.
A step that loads its artifact from the store (`controlplane.deployments.artifacts.artifact_loaded`)
makes the process that ran it tell the main process: directly in a solo or thread pool, by
`flowplane_artifact_loaded` from a prefork child.
"""
from __future__ import annotations

import logging
import os
import threading
from datetime import datetime, timezone
from importlib import metadata

import celery
from celery import bootsteps
from celery.worker.control import control_command
from django.dispatch import receiver

from controlplane.deployments import broadcast
from controlplane.deployments.artifact_cache import artifact_loaded
from workers import artifacts

logger = logging.getLogger(__name__)

_current: "Heartbeat | None" = None
# The worker's main process, set before the pool forks (children inherit it and differ from it).
_main_pid: int | None = None


def software_version() -> str:
    try:
        own = metadata.version("flowplane")
    except metadata.PackageNotFoundError:
        own = "dev"
    return f"flowplane/{own} celery/{celery.__version__}"


def advertised_step_types() -> list[str]:
    """Step types this worker can run, if the step registry is importable here."""
    try:
        from pipelines.steps import step_type_names
    except ImportError:
        return []
    try:
        return sorted(step_type_names())
    except Exception:  # a broken registry must not stop the heartbeat
        logger.exception("fleet.step_types_failed")
        return []


class Heartbeat:
    """What the worker reports and the thread that reports it."""

    def __init__(self, worker, *, interval: float) -> None:
        self.worker = worker
        self.interval = max(0.05, float(interval))
        self.hostname = worker.hostname
        self.pid = os.getpid()
        # Taken before the consumer starts: every attempt this process claims starts after it.
        self.process_started_at = datetime.now(timezone.utc)
        self.configured_queues = sorted(worker.app.amqp.queues.consume_from or {})
        self.version = software_version()
        self.step_types = advertised_step_types()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.beats = 0
        self.failures = 0

    # -- what is reported -------------------------------------------------------------------
    def consumer(self):
        return getattr(self.worker, "consumer", None)

    def active_consumers(self) -> list[str] | None:
        """Queues consumed right now; None while the consumer is (re)connecting."""
        task_consumer = getattr(self.consumer(), "task_consumer", None)
        if task_consumer is None:
            return None
        return sorted(queue.name for queue in task_consumer.queues)

    def queues(self) -> list[str]:
        """Configured at start, plus any added since by `add_consumer`."""
        current = self.worker.app.amqp.queues.consume_from or {}
        return sorted(set(self.configured_queues) | set(current))

    def concurrency(self) -> int:
        pool = getattr(self.worker, "pool", None)
        try:
            size = pool.num_processes if pool is not None else None
        except Exception:
            size = None
        return int(size or self.worker.max_concurrency or self.worker.concurrency or 0)

    def pool_pids(self) -> list[int] | None:
        """The processes that run this worker's tasks: the prefork pool's children, or this
        process for solo and thread pools; None when the pool cannot tell (then nothing is
        concluded from it)."""
        pool = getattr(self.worker, "pool", None)
        if pool is None:
            return None
        inner = getattr(pool, "_pool", None)
        if inner is None:  # solo and thread pools run tasks in this process
            return [self.pid]
        try:
            pids = [proc.pid for proc in list(inner._pool) if proc.pid]
        except Exception:  # a pool of another kind (greenlets): say nothing
            return None
        return pids or None

    def status(self) -> dict:
        return {
            "hostname": self.hostname,
            "pid": self.pid,
            "queues": self.queues(),
            "active_consumers": self.active_consumers(),
            "concurrency": self.concurrency(),
            "loaded_artifacts": artifacts.loaded(),
            "step_types": self.step_types,
            "software_version": self.version,
            "beats": self.beats,
            "failures": self.failures,
        }

    # -- the thread -------------------------------------------------------------------------
    @staticmethod
    def _release_connections() -> None:
        """Close this thread's connections even when CONN_MAX_AGE keeps them: a pool child forked
        while the socket is open would share it (and could close it under us on exit)."""
        from django.db import close_old_connections, connections

        close_old_connections()
        connections.close_all()

    def beat(self) -> bool:
        from django.db import close_old_connections

        from controlplane.fleet.services import worker_heartbeat

        close_old_connections()
        try:
            worker_heartbeat(
                hostname=self.hostname,
                queues=self.queues(),
                concurrency=self.concurrency(),
                pid=self.pid,
                software_version=self.version,
                loaded_artifacts=artifacts.loaded(),
                step_types=self.step_types,
                active_consumers=self.active_consumers(),
                pool_pids=self.pool_pids(),
                process_started_at=self.process_started_at,
            )
        except Exception:
            self.failures += 1
            logger.exception("fleet.heartbeat_failed", extra={"hostname": self.hostname, "failures": self.failures})
            return False
        finally:
            self._release_connections()
        self.beats += 1
        return True

    def stopped(self) -> None:
        from django.db import close_old_connections

        from controlplane.fleet.services import worker_stopped

        close_old_connections()
        try:
            worker_stopped(hostname=self.hostname)
        except Exception:
            logger.exception("fleet.worker_stopped_failed", extra={"hostname": self.hostname})
        finally:
            self._release_connections()

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                self.beat()
            except BaseException:  # never let the thread die silently; try again next interval
                logger.exception("fleet.heartbeat_crashed", extra={"hostname": self.hostname})
            self._wake.wait(self.interval)
            self._wake.clear()
        self.stopped()

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        if self._thread and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, name="flowplane-heartbeat", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread and self._thread is not threading.current_thread():
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.warning("fleet.heartbeat_stop_timeout", extra={"hostname": self.hostname})


class FleetHeartbeat(bootsteps.StartStopStep):
    """Worker bootstep: heartbeat thread from after the pool starts until the worker stops."""

    label = "FleetHeartbeat"
    requires = {"celery.worker.components:Pool"}

    def __init__(self, worker, **kwargs) -> None:
        global _main_pid
        super().__init__(worker, **kwargs)
        self.heartbeat: Heartbeat | None = None
        _main_pid = os.getpid()

    def start(self, worker) -> None:
        global _current
        from django.conf import settings

        self.heartbeat = _current = Heartbeat(worker, interval=settings.WORKER_HEARTBEAT_INTERVAL_S)
        self.heartbeat.start()
        logger.info(
            "fleet.heartbeat_started",
            extra={"hostname": worker.hostname, "interval_s": self.heartbeat.interval},
        )

    def stop(self, worker) -> None:
        if self.heartbeat is not None:
            self.heartbeat.stop()
            self.heartbeat = None

    def terminate(self, worker) -> None:
        self.stop(worker)

    def shutdown(self, worker) -> None:
        self.stop(worker)


def install_bootsteps(app) -> None:
    """Add the heartbeat to `app`'s worker blueprint (idempotent; control commands are global)."""
    app.steps["worker"].add(FleetHeartbeat)


# -- remote control --------------------------------------------------------------------------


def _held_reply(state, **fields) -> dict:
    return {"ok": True, "hostname": state.consumer.hostname, **fields, "artifacts": artifacts.loaded()}


@control_command()
def flowplane_status(state, **kwargs):
    """Flowplane: hostname, queues, active consumers, concurrency, loaded artifact digests."""
    if _current is not None:
        return _current.status()
    return {
        "hostname": state.consumer.hostname,
        "pid": os.getpid(),
        "loaded_artifacts": artifacts.loaded(),
        "heartbeat": "not running",
    }


@control_command(args=[("artifacts", list), ("replace", bool)], signature="<artifacts> [replace]")
def flowplane_load_artifacts(state, artifacts=None, replace=False, **kwargs):
    """Flowplane: cache rendered job artifacts [{job_id, digest, spec}] and report their digests."""
    from workers import artifacts as cache

    try:
        loaded = cache.load_artifacts(artifacts or [], replace=bool(replace))
    except cache.ArtifactError as exc:
        return {"ok": False, "hostname": state.consumer.hostname, "error": str(exc)}
    if _current is not None:
        _current.wake()
    logger.info("fleet.artifacts_loaded", extra={"job_ids": sorted(loaded), "replace": bool(replace)})
    return _held_reply(state, loaded=loaded)


@control_command(args=[("job_ids", list)], signature="[job_ids]")
def flowplane_unload_artifacts(state, job_ids=None, **kwargs):
    """Flowplane: drop cached artifacts by job id (all when none given)."""
    unloaded = artifacts.unload_artifacts(job_ids)
    if _current is not None:
        _current.wake()
    logger.info("fleet.artifacts_unloaded", extra={"job_ids": unloaded})
    return _held_reply(state, unloaded=unloaded)


@control_command(args=[("artifact", dict)], signature="<artifact>")
def flowplane_artifact_loaded(state, artifact=None, **kwargs):
    """Flowplane: a pool child loaded this artifact on demand; hold it unless its key holds one."""
    try:
        added = artifacts.hold_if_missing(artifact or {})
    except artifacts.ArtifactError as exc:
        logger.warning("fleet.artifact_refused", extra={"error": str(exc)})
        return {"ok": False, "hostname": state.consumer.hostname, "error": str(exc)}
    if added and _current is not None:
        _current.wake()
    logger.info("fleet.artifact_loaded_on_demand", extra={"job_id": (artifact or {}).get("job_id"), "held": added})
    return _held_reply(state, held=added)


@receiver(artifact_loaded, dispatch_uid="workers.bootsteps.artifact_loaded")
def _report_loaded_on_demand(sender, *, key, digest, spec, worker="", **kwargs) -> None:
    """A step of this worker loaded its artifact from the store: make the main process hold it."""
    if _main_pid is None:  # not a worker (a test or the web process ran the step)
        return
    artifact = {"job_id": key, "digest": digest, "spec": spec}
    if os.getpid() == _main_pid:  # solo or thread pool: this process reports the heartbeats
        if artifacts.hold_if_missing(artifact) and _current is not None:
            _current.wake()
    elif worker:
        broadcast.artifact_loaded(worker, artifact)
