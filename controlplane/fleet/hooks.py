"""What the fleet tells other apps, so fleet never imports them.

Signals (`django.dispatch.Signal`), sent after the transaction that decided them has committed, to
every receiver even if one raises (`send_robust`; a receiver that raises is logged):

- `workers_offline(hostnames=[...])`: `workers_mark_offline` just marked these workers offline.
- `worker_replaced(hostname=..., started_at=...)`: a new process reports under a hostname whose
  previous process never said it stopped (a restarted container or systemd unit keeps its node
  name): everything the earlier process had claimed before `started_at` is lost.

The executions app connects its lost-work recovery to both (in its `AppConfig.ready`).

`artifact_owner`: the app whose artifacts workers cache says which of them a set of companies may
see: `artifact_owner(keys, company_ids) -> visible keys`. A worker may serve several tenants, so
the fleet API shows a caller only their own companies' artifacts; with no owner registered it
shows none. The deployments app registers it. (A query with one answer, so not a signal.)
"""
from __future__ import annotations

import logging
from datetime import datetime
from typing import Callable

from django.dispatch import Signal

logger = logging.getLogger(__name__)

workers_offline = Signal()  # hostnames: list[str]
worker_replaced = Signal()  # hostname: str, started_at: datetime
artifact_owner: Callable[[set[str], set[int]], set[str]] | None = None


def visible_artifacts(loaded: dict[str, str] | None, company_ids: set[int]) -> dict[str, str]:
    """The part of a worker's `loaded_artifacts` that belongs to `company_ids`."""
    if not loaded or artifact_owner is None:
        return {}
    keep = artifact_owner(set(loaded), set(company_ids))
    return {key: digest for key, digest in loaded.items() if key in keep}


def run_workers_offline(hostnames: list[str]) -> None:
    _send(workers_offline, hostnames=list(hostnames))


def run_worker_replaced(hostname: str, started_at: datetime) -> None:
    _send(worker_replaced, hostname=hostname, started_at=started_at)


def _send(signal: Signal, **fields) -> None:
    for receiver, result in signal.send_robust(sender=None, **fields):
        if isinstance(result, Exception):  # one broken receiver must not keep the others from running
            logger.error("fleet.hook_failed", exc_info=result,
                         extra={"hook": getattr(receiver, "__qualname__", repr(receiver))})
