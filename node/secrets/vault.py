"""HS_SECKEY values at rest: sealed with the node's secrets key, shown to nobody.

A native challenge answer is a MAC keyed with the secret itself (docs/authentication.md:
no one-way stored form can check it), so the node keeps the secret, encrypted with a key
that never enters the database (``KeyStore.secrets_key``, in the key directory). The
forms an HS_SECKEY value's data can take in the registry:

    0x00 0x02  nonce(12)  AES-256-GCM ciphertext+tag      sealed (every write now)
    0x00 0x01  ...                                        hashed (older rows; ``legacy``)
    anything else                                         clear (rows written by raw SQL)

What leaves the node is neither: resolution replies carry ``SHOWN`` in its place, so
an admin who may read the value learns that a secret is set, not what it is, and a
client that writes back a record it read keeps the secret it had (``SHOWN`` on write
means "unchanged"). NUL-led forms can never be typed as a text secret.
"""

from __future__ import annotations

import hmac
import os
from dataclasses import replace

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from node.secrets import legacy
from node.secrets.legacy import looks_hashed, verify_secret
from node.settings import Settings
from node.signing.keystore import open_key_store
from protocol.values import HandleValue

SECKEY_TYPE = "HS_SECKEY"
SEALED = b"\x00\x02"
SHOWN = b"\x00\x00secret set, not shown"
_NONCE_BYTES = 12
_AAD = b"idnode HS_SECKEY"


class SealedElsewhere(ValueError):
    """Sealed data this node's secrets key does not open (another registry's copy)."""


def is_seckey(value: HandleValue) -> bool:
    return value.type.upper() == SECKEY_TYPE


def looks_sealed(data: bytes) -> bool:
    return data[:2] == SEALED


def shown(value: HandleValue) -> HandleValue:
    """The value as it may leave the node: an HS_SECKEY's data replaced by ``SHOWN``."""
    return replace(value, data=SHOWN) if is_seckey(value) else value


class SecretVault:
    """Seals and opens HS_SECKEY data with one node's secrets key."""

    def __init__(self, key: bytes):
        if len(key) != 32:
            raise ValueError("the secrets key must be 32 bytes")
        self._aead = AESGCM(key)

    def __repr__(self) -> str:  # the key stays out of logs and tracebacks
        return "SecretVault()"

    def seal(self, secret: bytes) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return SEALED + nonce + self._aead.encrypt(nonce, secret, _AAD)

    def seal_for(self, purpose: bytes, data: bytes) -> bytes:
        """Data sealed for another use than an HS_SECKEY (a bearer token): bound to
        ``purpose``, so neither can stand in for the other."""
        nonce = os.urandom(_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, data, purpose)

    def open_for(self, purpose: bytes, stored: bytes) -> bytes:
        nonce, box = stored[:_NONCE_BYTES], stored[_NONCE_BYTES:]
        try:
            return self._aead.decrypt(nonce, box, purpose)
        except (InvalidTag, ValueError):
            raise SealedElsewhere("not sealed by this node for this use") from None

    def open(self, stored: bytes) -> bytes:
        """The secret in sealed data; SealedElsewhere when this key did not seal it."""
        nonce, box = stored[2 : 2 + _NONCE_BYTES], stored[2 + _NONCE_BYTES :]
        try:
            return self._aead.decrypt(nonce, box, _AAD)
        except (InvalidTag, ValueError):
            raise SealedElsewhere("sealed with another node's secrets key") from None

    def key_of(self, stored: bytes) -> bytes | None:
        """The key a challenge answer is MACed with (the secret's bytes); None when only a
        one-way hash is stored, or the seal is not ours."""
        if looks_sealed(stored):
            try:
                return self.open(stored)
            except SealedElsewhere:
                return None
        if looks_hashed(stored) or stored == SHOWN:
            return None
        return stored  # clear (written behind the node's back)

    def matches(self, secret: bytes, stored: bytes) -> bool:
        """Does ``secret`` (an HTTP Basic password) match the stored data? Constant-time
        for sealed and clear data; a PBKDF2 check for the legacy hashed form, so this
        blocks: callers run it in the authentication worker threads
        (``node.auth.checks``), after asking ``checkable``."""
        if looks_hashed(stored):
            return verify_secret(secret, stored)
        key = self.key_of(stored)
        return key is not None and hmac.compare_digest(key, secret)

    @staticmethod
    def checkable(stored: bytes) -> bool:
        """False for a legacy hash whose parameters are over the node's bound: a check
        skips it rather than compute it (``legacy.MAX_CHECKED_ITERATIONS``)."""
        return not looks_hashed(stored) or legacy.checkable(stored)


def open_vault(settings: Settings) -> SecretVault:
    """The vault of this node's key directory (blocking: reads and unwraps the key)."""
    return SecretVault(open_key_store(settings).secrets_key())
