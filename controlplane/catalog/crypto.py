"""Encryption of secret values at rest: Fernet with a key derived from settings.SECRETS_ENCRYPTION_KEY.

The Fernet key is HKDF-SHA256 of the setting (any string), so operators may set a passphrase
rather than a raw Fernet key. Changing the setting makes existing ciphertexts unreadable
(`decrypt` raises `SecretUndecryptable`): re-set every secret after a key change.
"""
from __future__ import annotations

import base64
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

_HKDF_INFO = b"flowplane.catalog.secrets.v1"


class SecretUndecryptable(Exception):
    """A ciphertext does not decrypt with the current key (key changed, or data corrupted)."""


@lru_cache(maxsize=4)
def _fernet(key_material: str) -> Fernet:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(
        key_material.encode("utf-8")
    )
    return Fernet(base64.urlsafe_b64encode(derived))


def _current() -> Fernet:
    key_material = getattr(settings, "SECRETS_ENCRYPTION_KEY", "")
    if not key_material:
        raise ImproperlyConfigured("SECRETS_ENCRYPTION_KEY is empty; set it to a long random string")
    return _fernet(key_material)


def encrypt(value: str) -> str:
    """The Fernet token (URL-safe base64 text) of `value`; a fresh IV every call."""
    return _current().encrypt(value.encode("utf-8")).decode("ascii")


def decrypt(token: str) -> str:
    """The value behind `token`; `SecretUndecryptable` if the key or data do not match."""
    try:
        return _current().decrypt(token.encode("ascii")).decode("utf-8")
    except (InvalidToken, UnicodeError):
        raise SecretUndecryptable(
            "secret does not decrypt with the current SECRETS_ENCRYPTION_KEY; set the secret again"
        ) from None
