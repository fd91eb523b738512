"""Control-plane side of rollouts: broadcast flowplane_* remote-control commands, grow pools.

Each helper talks to named workers only (`destination=[hostname, ...]`), waits at most
`DEPLOY_CONTROL_TIMEOUT_S` for their replies and returns them as `{hostname: reply}`. A worker that
does not answer is simply missing from the result; a broker error is logged and returns `{}`:
rollouts record what was acknowledged and reconcile converges the rest later.
"""
from __future__ import annotations

import logging
from typing import Iterable

logger = logging.getLogger(__name__)


def _app():
    from controlplane.core.celery_app import app

    return app


def _timeout(timeout: float | None) -> float:
    if timeout is not None:
        return timeout
    from django.conf import settings

    return float(getattr(settings, "DEPLOY_CONTROL_TIMEOUT_S", 2.0))


def _replies(raw) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for item in raw or []:
        for hostname, reply in item.items():
            out[hostname] = reply if isinstance(reply, dict) else {"ok": False, "error": repr(reply)}
    return out


def _broadcast(command: str, hostnames: Iterable[str], *, arguments=None, timeout=None) -> dict[str, dict]:
    destination = sorted(set(hostnames))
    if not destination:
        return {}
    try:
        raw = _app().control.broadcast(
            command,
            arguments=arguments or {},
            destination=destination,
            reply=True,
            timeout=_timeout(timeout),
            limit=len(destination),
        )
    except Exception:  # broker down: nothing acknowledged; reconcile retries later
        logger.exception("deploy.broadcast_failed", extra={"command": command, "destination": destination})
        return {}
    return _replies(raw)


def load_artifacts(hostname: str, artifacts: list[dict], *, replace: bool = True, timeout=None) -> dict | None:
    """Tell one worker to hold exactly `artifacts` ([{job_id, digest, spec}]); its reply or None."""
    replies = _broadcast(
        "flowplane_load_artifacts", [hostname], arguments={"artifacts": artifacts, "replace": replace}, timeout=timeout
    )
    return replies.get(hostname)


def unload_artifacts(hostnames: Iterable[str], job_ids: list[str], *, timeout=None) -> dict[str, dict]:
    """Drop the given artifact keys on each worker."""
    if not job_ids:
        return {}
    return _broadcast("flowplane_unload_artifacts", hostnames, arguments={"job_ids": list(job_ids)}, timeout=timeout)


def worker_status(hostnames: Iterable[str], *, timeout=None) -> dict[str, dict]:
    """`flowplane_status` replies: queues, active consumers, concurrency, loaded artifact digests."""
    return _broadcast("flowplane_status", hostnames, timeout=timeout)


def pool_grow(hostname: str, n: int, *, timeout=None) -> dict | None:
    """Grow one worker's pool by `n` processes (prefork pools only)."""
    if n <= 0:
        return None
    return _broadcast("pool_grow", [hostname], arguments={"n": int(n)}, timeout=timeout).get(hostname)


def add_consumer(hostname: str, queue: str, *, timeout=None) -> dict | None:
    """Make one worker consume `queue` again (after a `cancel_consumer`)."""
    return _broadcast("add_consumer", [hostname], arguments={"queue": queue}, timeout=timeout).get(hostname)


def artifact_loaded(hostname: str, artifact: dict) -> None:
    """Tell `hostname`'s main process that one of its pool children loaded `artifact` ({job_id:
    <artifact key>, digest, spec}) on demand, so that it holds and reports it. Fire and forget."""
    try:
        _app().control.broadcast("flowplane_artifact_loaded", arguments={"artifact": artifact},
                                 destination=[hostname], reply=False)
    except Exception:  # the run goes on; the next miss (or reconcile) tells it again
        logger.exception("deploy.broadcast_failed", extra={"command": "flowplane_artifact_loaded",
                                                           "destination": [hostname]})
