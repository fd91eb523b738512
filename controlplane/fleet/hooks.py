"""Extension points other apps register into, so fleet never imports them.

`on_workers_offline`: callables taking the list of hostnames that `workers_mark_offline` just
marked offline. They run after the transaction that marked them has committed, one after the
other; a hook that raises is logged and does not stop the others. The executions app registers
its lost-step recovery here (in its `AppConfig.ready`):

    from controlplane.fleet import hooks
    hooks.on_workers_offline.append(recover_steps_of_lost_workers)

`on_worker_replaced`: callables taking `(hostname, started_at)` when a new process reports under
a hostname whose previous process never said it stopped (a restarted container or systemd unit
keeps its node name): everything the earlier process had claimed before `started_at` is lost.
Run after the heartbeat's transaction commits, like `on_workers_offline`.

`artifact_owner`: the app whose artifacts workers cache says which of them a set of companies may
see: `artifact_owner(keys, company_ids) -> visible keys`. A worker may serve several tenants, so
the fleet API shows a caller only their own companies' artifacts; with no owner registered it
shows none. The deployments app registers it.
"""
from __future__ import annotations

import logging
from datetime import datetime
from typing import Callable

logger = logging.getLogger(__name__)

on_workers_offline: list[Callable[[list[str]], None]] = []
on_worker_replaced: list[Callable[[str, datetime], None]] = []
artifact_owner: Callable[[set[str], set[int]], set[str]] | None = None


def visible_artifacts(loaded: dict[str, str] | None, company_ids: set[int]) -> dict[str, str]:
    """The part of a worker's `loaded_artifacts` that belongs to `company_ids`."""
    if not loaded or artifact_owner is None:
        return {}
    keep = artifact_owner(set(loaded), set(company_ids))
    return {key: digest for key, digest in loaded.items() if key in keep}


def run_workers_offline(hostnames: list[str]) -> None:
    _run_each(on_workers_offline, list(hostnames))


def run_worker_replaced(hostname: str, started_at: datetime) -> None:
    _run_each(on_worker_replaced, hostname, started_at)


def _run_each(hooks: list[Callable], *args) -> None:
    for hook in list(hooks):
        try:
            hook(*args)
        except Exception:  # one broken hook must not keep the others from running
            logger.exception("fleet.hook_failed", extra={"hook": getattr(hook, "__qualname__", repr(hook))})
