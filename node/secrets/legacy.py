"""The hashed form HS_SECKEY values were stored in before they were sealed (``vault``):
salted PBKDF2. Read-only now: a hashed secret still checks an HTTP Basic password until
its owner sets it again (``idnode handle set-secret``), but it cannot answer a native
challenge, whose MAC needs the key itself (docs/authentication.md).

    u8   0x00        marker: no text secret starts with NUL
    u8   0x01        version: PBKDF2-HMAC-SHA256
    u32  iterations  big-endian, 1 .. MAX_ITERATIONS
    u32  salt length + salt bytes   (16 random bytes)
    u32  key length  + derived key  (32 bytes)

Pure functions, no I/O; callers run ``verify_secret`` in a thread (hashlib releases the
GIL). ``hash_secret`` remains for tests that need rows of the old form.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from dataclasses import dataclass

MARKER = 0x00
VERSION_PBKDF2_SHA256 = 0x01
SALT_BYTES = 16
KEY_BYTES = 32
# OWASP (2023) guidance for PBKDF2-HMAC-SHA256; the setting can raise it.
DEFAULT_ITERATIONS = 600_000
MIN_ITERATIONS = 1_000
# What the parser reads (the old setting allowed up to this many)...
MAX_ITERATIONS = 5_000_000
# ...and what a check computes: only the node chooses KDF parameters, and rows over this
# (a hash planted with 5,000,000 iterations costs ~3 s of a core per check) are skipped,
# never computed; their owners set the secret again (``idnode handle set-secret``).
MAX_CHECKED_ITERATIONS = 1_000_000

_U32 = struct.Struct(">I")


class SecretFormatError(ValueError):
    """Data claims to be a hashed secret but is not a valid one."""


@dataclass(frozen=True, slots=True)
class HashedSecret:
    iterations: int
    salt: bytes
    key: bytes

    def to_bytes(self) -> bytes:
        return (
            bytes((MARKER, VERSION_PBKDF2_SHA256))
            + _U32.pack(self.iterations)
            + _U32.pack(len(self.salt))
            + self.salt
            + _U32.pack(len(self.key))
            + self.key
        )


def looks_hashed(data: bytes) -> bool:
    """True when ``data`` starts like a stored hash (it may still be malformed)."""
    return len(data) >= 2 and data[0] == MARKER and data[1] == VERSION_PBKDF2_SHA256


def parse_hashed(data: bytes) -> HashedSecret:
    if not looks_hashed(data):
        raise SecretFormatError("not a hashed secret (expected 0x00 0x01 header)")
    try:
        pos = 2
        (iterations,) = _U32.unpack_from(data, pos)
        pos += 4
        (salt_len,) = _U32.unpack_from(data, pos)
        pos += 4
        salt = data[pos : pos + salt_len]
        pos += salt_len
        (key_len,) = _U32.unpack_from(data, pos)
        pos += 4
        key = data[pos : pos + key_len]
        pos += key_len
    except struct.error:
        raise SecretFormatError("hashed secret is truncated") from None
    if pos != len(data) or len(salt) != salt_len or len(key) != key_len:
        raise SecretFormatError("hashed secret has wrong field lengths")
    if not 1 <= iterations <= MAX_ITERATIONS:
        raise SecretFormatError(
            f"hashed secret iterations {iterations} outside 1..{MAX_ITERATIONS}"
        )
    if not 8 <= salt_len <= 64 or not 16 <= key_len <= 64:
        raise SecretFormatError("hashed secret salt must be 8-64 bytes and key 16-64 bytes")
    return HashedSecret(iterations, bytes(salt), bytes(key))


def hash_secret(
    secret: bytes, iterations: int = DEFAULT_ITERATIONS, *, salt: bytes | None = None
) -> bytes:
    """The stored form of ``secret`` with a fresh random salt."""
    if not secret:
        raise ValueError("secret is empty")
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    key = hashlib.pbkdf2_hmac("sha256", secret, salt, iterations, KEY_BYTES)
    return HashedSecret(iterations, salt, key).to_bytes()


def checkable(stored: bytes) -> bool:
    """Is ``stored`` a hashed secret a check may compute (well-formed, and no more than
    ``MAX_CHECKED_ITERATIONS``)?"""
    try:
        return parse_hashed(stored).iterations <= MAX_CHECKED_ITERATIONS
    except SecretFormatError:
        return False


def verify_secret(secret: bytes, stored: bytes) -> bool:
    """Does ``secret`` match the stored hash? Constant-time compare; a malformed or
    clear-text ``stored`` value never matches (clear secrets are not accepted), nor does
    one over ``MAX_CHECKED_ITERATIONS``, which is not even computed."""
    try:
        parsed = parse_hashed(stored)
    except SecretFormatError:
        return False
    if parsed.iterations > MAX_CHECKED_ITERATIONS:
        return False
    key = hashlib.pbkdf2_hmac("sha256", secret, parsed.salt, parsed.iterations, len(parsed.key))
    return hmac.compare_digest(key, parsed.key)
