"""Checking an ``index:handle`` + secret pair (HTTP Basic, the IDIS password login)
against the admin's HS_SECKEY values, through the node's secret vault: a constant-time
compare with the sealed secret, or for rows still in the older hashed form a PBKDF2
check. The admin handle must be held by this node's registry.

Every check runs through the ``AuthGate``: the failure is reserved for the client and
the identity before anything is computed, and the computing happens in the worker
threads. An identity that does not exist, or holds no secret this node may check, gets
the same work (one check against a dummy sealed secret) and the same answer as a wrong
secret, so neither the reply nor its timing tells them apart. At most
``max_keys_tried`` values are tried for index 0 ("any"), and a legacy hash whose
parameters are over the node's bound is skipped, never computed.

A successful check is remembered for ``cache_ttl_s`` under a keyed digest of (admin,
secret, stored data), so a client sending Basic credentials with every request costs
one record read and no reservation; changing the secret changes the stored data and
misses the cache. Identical checks in flight at once (a client's burst of requests
with the same credentials) share one computation and one reservation.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
from collections import OrderedDict
from collections.abc import Callable, Sequence

from node.auth.gate import AuthGate
from node.auth.identity import CredentialsRejected, Identity
from node.secrets.vault import SecretVault, is_seckey
from protocol.handle import normalise
from protocol.values import HandleValue
from registry.store import Registry

# Secret keys one attempt may try (index 0 means "any"): a record cannot make one
# anonymous request check an unbounded number (the auth_max_keys_tried setting).
MAX_KEYS_TRIED = 8

# A flight's outcome: the identity proven, or the reason it was not.
_Outcome = Identity | str


class SecretKeyVerifier:
    def __init__(
        self,
        registry: Registry,
        vault: SecretVault,
        gate: AuthGate,
        *,
        monotonic: Callable[[], float],
        max_keys_tried: int = MAX_KEYS_TRIED,
        cache_ttl_s: float = 300.0,
        cache_size: int = 10_000,
    ):
        self.registry = registry
        self.vault = vault
        self.gate = gate
        self.monotonic = monotonic
        self.max_keys_tried = max_keys_tried
        self._cache_ttl_s = cache_ttl_s
        self._cache_size = cache_size
        self._cache: OrderedDict[bytes, float] = OrderedDict()
        self._cache_key = os.urandom(32)  # per process: cache entries mean nothing elsewhere
        self._flights: dict[bytes, asyncio.Future[_Outcome]] = {}
        # What an unknown identity is checked against: a sealed secret nobody knows.
        self._dummy = vault.seal(os.urandom(24))

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

    async def verify(
        self, handle: str, index: int, secret: bytes, *, client: str, scheme: str = "basic"
    ) -> Identity:
        """The identity ``index:handle`` proves with ``secret``; index 0 means "any
        HS_SECKEY value of the handle" (the reference's rule). Raises
        CredentialsRejected with the same message for every failure, so the answer does
        not tell an unknown admin from a wrong secret (metrics keep the reason);
        TooManyFailures or ChecksBusy from the gate."""
        key = normalise(handle)
        failure = f"authentication failed for {index}:{handle}"
        record = await self.registry.get_handle(key)
        values = record.values if record is not None else ()
        keys = [v for v in values if is_seckey(v) and (index == 0 or v.index == index)]
        now = self.monotonic()
        for value in keys[: self.max_keys_tried]:
            if self._cached(self._digest(key, value.index, secret, value.data), now):
                assert record is not None
                return Identity(record.handle, value.index, scheme)
        flight = self._digest(key, index, secret, b"".join(v.data for v in keys))
        running = self._flights.get(flight)
        if running is None:
            running = self._flights[flight] = asyncio.get_running_loop().create_future()
            try:
                outcome = await self._check(key, keys, secret, client)
                running.set_result(outcome)
            except asyncio.CancelledError:
                running.cancel()
                raise
            except Exception as exc:
                running.set_exception(exc)
                running.exception()  # retrieved: no "never retrieved" warning if alone
                raise
            finally:
                del self._flights[flight]
        else:
            outcome = await asyncio.shield(running)  # the same check, already running
        if isinstance(outcome, Identity):
            assert record is not None
            return Identity(record.handle, outcome.index, scheme)
        reason = "unknown_admin" if record is None else outcome
        raise CredentialsRejected(failure, reason, counted=True)

    async def _check(
        self, key: str, keys: Sequence[HandleValue], secret: bytes, client: str
    ) -> _Outcome:
        tried = list(keys[: self.max_keys_tried])
        usable = [v for v in tried if self.vault.checkable(v.data)]
        async with self.gate.attempt(client, key) as attempt:
            self.gate.skipped("cap", len(keys) - len(tried))
            self.gate.skipped("cost", len(tried) - len(usable))
            if not usable:
                # The work of one sealed secret, for the answer a wrong secret gets.
                await attempt.run(self.vault.matches, secret, self._dummy)
                return "no_secret_key"
            for n, value in enumerate(usable):
                if attempt.out_of_time:
                    self.gate.skipped("budget", len(usable) - n)
                    break
                if await attempt.run(self.vault.matches, secret, value.data):
                    attempt.succeeded()
                    self._remember(
                        self._digest(key, value.index, secret, value.data), self.monotonic()
                    )
                    return Identity(key, value.index, "basic")
        return "bad_secret"
