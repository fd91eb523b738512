"""Webhook signatures: HMAC-SHA256 with a per-hook secret, compared in constant time.

Two schemes are accepted:

- Flowplane's: ``X-Flowplane-Timestamp: <unix seconds>`` and
  ``X-Flowplane-Signature: sha256=<hex HMAC(secret, "<timestamp>." + body)>``. The timestamp is
  signed, so an old delivery cannot be replayed with a fresh one; older than ``MAX_AGE_S`` (or
  that far in the future) is refused.
- GitHub's: ``X-Hub-Signature-256: sha256=<hex HMAC(secret, body)>``. GitHub signs no timestamp;
  its deliveries are protected from replay by the delivery id (``X-GitHub-Delivery``) dedupe.

During a rotation a hook has two secrets; a signature made with either is valid.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Iterable

MAX_AGE_S = 300
PREFIX = "sha256="

OK = "ok"
BAD_SIGNATURE = "bad_signature"
STALE_TIMESTAMP = "stale_timestamp"
MISSING_SIGNATURE = "missing_signature"


@dataclass(frozen=True)
class Verdict:
    """``code`` is ``ok`` or why the delivery is refused; ``secret_index`` says which secret matched."""

    code: str
    message: str = ""
    secret_index: int | None = None

    @property
    def ok(self) -> bool:
        return self.code == OK


def sign(secret: str, body: bytes, timestamp: int | str | None = None) -> str:
    """``sha256=<hex>`` over ``"<timestamp>." + body`` (or the body alone, GitHub's way)."""
    message = body if timestamp is None else f"{timestamp}.".encode("ascii") + body
    return PREFIX + hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def verify(secrets: Iterable[str], body: bytes, signature: str | None, timestamp: str | None, *, now: float,
           max_age_s: int = MAX_AGE_S) -> Verdict:
    """Check a Flowplane-style delivery: a signed timestamp no older than ``max_age_s``."""
    if not signature or timestamp is None:
        return Verdict(MISSING_SIGNATURE, "send X-Flowplane-Timestamp and X-Flowplane-Signature "
                                          "(sha256=HMAC-SHA256 of '<timestamp>.<body>')")
    if not (timestamp.isascii() and timestamp.isdigit()):  # "²".isdigit() holds, int("²") fails
        return Verdict(BAD_SIGNATURE, "X-Flowplane-Timestamp must be unix seconds")
    verdict = _match(secrets, body, signature, timestamp)
    if not verdict.ok:
        return verdict
    if abs(now - int(timestamp)) > max_age_s:
        return Verdict(STALE_TIMESTAMP, f"timestamp is more than {max_age_s} s from the server's clock; "
                                        "sign the delivery again with the current time")
    return verdict


def verify_github(secrets: Iterable[str], body: bytes, signature: str | None) -> Verdict:
    """Check a GitHub-style delivery (``X-Hub-Signature-256`` over the body)."""
    if not signature:
        return Verdict(MISSING_SIGNATURE, "send X-Hub-Signature-256")
    return _match(secrets, body, signature, None)


def _match(secrets: Iterable[str], body: bytes, signature: str, timestamp: str | None) -> Verdict:
    found = None
    given = signature.strip().encode("ascii", "replace")
    for index, secret in enumerate(secrets):
        if not secret:
            continue
        # compare_digest on every secret, even after a match: the time does not tell which one matched
        if hmac.compare_digest(sign(secret, body, timestamp).encode("ascii"), given) and found is None:
            found = index
    if found is None:
        return Verdict(BAD_SIGNATURE, "signature does not match the hook's secret")
    return Verdict(OK, secret_index=found)


def github_branch(payload: object) -> str | None:
    """The branch a GitHub push delivery is for (``refs/heads/main`` -> ``main``), else None."""
    ref = payload.get("ref") if isinstance(payload, dict) else None
    if isinstance(ref, str) and ref.startswith("refs/heads/"):
        return ref[len("refs/heads/"):]
    return None
