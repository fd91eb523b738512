"""Signal helpers for tests: hear what a signal sends with no other receiver connected."""
from __future__ import annotations

from contextlib import contextmanager

from django.dispatch import Signal


@contextmanager
def only_receiver(signal: Signal, receiver):
    """Connect `receiver` alone to `signal` for the block; the app's receivers come back after."""
    saved = list(signal.receivers)
    signal.receivers = []
    signal.sender_receivers_cache.clear()
    signal.connect(receiver, weak=False)
    try:
        yield
    finally:
        signal.receivers = saved
        signal.sender_receivers_cache.clear()


def connected_uids(signal: Signal) -> set[str]:
    """The dispatch uids of the receivers connected to `signal`."""
    return {entry[0][0] for entry in signal.receivers if isinstance(entry[0][0], str)}
