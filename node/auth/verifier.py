"""Checking an ``index:handle`` + secret pair (HTTP Basic) against the admin's HS_SECKEY
values, through the node's secret vault: a constant-time compare with the sealed
secret, or for rows still in the older hashed form a PBKDF2 check off the event loop
(``node.secrets.vault``). The admin handle must be held by this node's registry.

A successful check is remembered for ``cache_ttl_s`` under a keyed digest of (admin,
secret, stored data), so a client sending Basic credentials with every request costs
one record read; changing the secret changes the stored data and misses the cache.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections import OrderedDict
from collections.abc import Callable

from node.auth.identity import CredentialsRejected, Identity
from node.secrets.vault import SecretVault, is_seckey
from protocol.handle import normalise
from registry.store import Registry

# Secret keys one attempt may try (index 0 means "any"): a record cannot make one
# anonymous request check an unbounded number.
MAX_KEYS_TRIED = 8


class SecretKeyVerifier:
    def __init__(
        self,
        registry: Registry,
        vault: SecretVault,
        *,
        monotonic: Callable[[], float],
        cache_ttl_s: float = 300.0,
        cache_size: int = 10_000,
    ):
        self.registry = registry
        self.vault = vault
        self.monotonic = monotonic
        self._cache_ttl_s = cache_ttl_s
        self._cache_size = cache_size
        self._cache: OrderedDict[bytes, float] = OrderedDict()
        self._cache_key = os.urandom(32)  # per process: cache entries mean nothing elsewhere

    def _digest(self, handle_key: str, index: int, secret: bytes, stored: bytes) -> bytes:
        mac = hmac.new(self._cache_key, digestmod=hashlib.sha256)
        for part in (handle_key.encode("utf-8"), str(index).encode(), secret, stored):
            mac.update(len(part).to_bytes(4, "big") + part)
        return mac.digest()

    def _cached(self, digest: bytes, now: float) -> bool:
        expiry = self._cache.get(digest)
        if expiry is None:
            return False
        if expiry <= now:
            del self._cache[digest]
            return False
        return True

    def _remember(self, digest: bytes, now: float) -> None:
        self._cache[digest] = now + self._cache_ttl_s
        self._cache.move_to_end(digest)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    async def verify(self, handle: str, index: int, secret: bytes) -> Identity:
        """The identity ``index:handle`` proves with ``secret``; index 0 means "any
        HS_SECKEY value of the handle" (the reference's rule). Raises
        CredentialsRejected with the same message for every failure, so the answer does
        not tell an unknown admin from a wrong secret (metrics keep the reason)."""
        what = f"{index}:{handle}"
        failure = f"authentication failed for {what}"
        record = await self.registry.get_handle(normalise(handle))
        if record is None:
            raise CredentialsRejected(failure, "unknown_admin")
        keys = [v for v in record.values if is_seckey(v) and (index == 0 or v.index == index)]
        keys = keys[:MAX_KEYS_TRIED]
        if not keys:
            raise CredentialsRejected(failure, "no_secret_key")
        now = self.monotonic()
        for value in keys:
            digest = self._digest(normalise(handle), value.index, secret, value.data)
            if self._cached(digest, now):
                return Identity(record.handle, value.index, "basic")
            if await self.vault.matches(secret, value.data):
                self._remember(digest, now)
                return Identity(record.handle, value.index, "basic")
        raise CredentialsRejected(failure, "bad_secret")
