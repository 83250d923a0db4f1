"""Checking a challenge answer (opcode 200, or the 201 a peer sends to ask) against the
identity's own HS_SECKEY or HS_PUBKEY values (docs/authentication.md, "Answer").

The identity must be held by this node's registry. A secret-key answer is a MAC keyed
with the secret itself, so it is checked with the secret the vault opens; a row still
in the older one-way form cannot be checked (its owner sets it again). A public-key
answer is checked against the identity's HS_PUBKEY values (Handle key format, JWK or
PEM text, as the IDIS SDKs write them); keys over the cost bounds are skipped
unverified. Index 0 means "any value of that type", tried in index order, at most
``max_keys_tried`` of them.

Every check runs in the authentication worker threads (``node.auth.gate``), an opcode
200 answer reserving its failure for the client and the identity first. An identity of
a prefix served here that does not exist, or holds no key this node can check with,
gets the same work as a wrong answer (the same MAC, a PBKDF2 with the answer's own
parameters, on a secret nobody holds; a signature check with a key nobody holds) and
the same reply; the reason is kept for metrics only.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable

from cryptography.hazmat.primitives.asymmetric import ec

from node.auth.gate import Attempt, AuthGate
from node.auth.identity import Identity
from node.auth.pubkey import Unusable, usable_key
from node.secrets.legacy import looks_hashed
from node.secrets.vault import SecretVault, is_seckey
from protocol.challenge import SeckeyForm, check_pubkey_answer, check_seckey_answer
from protocol.codes import ResponseCode
from protocol.handle import normalise
from protocol.keys import PublicKey
from protocol.values import HandleValue
from registry.rows import Record
from registry.store import Registry

SECKEY = "HS_SECKEY"
PUBKEY = "HS_PUBKEY"
PUBKEY_TYPE = "HS_PUBKEY"
MAX_KEYS_TRIED = 8
VERIFY_SOURCE = "verify"  # opcode 201 checks share one turn in the worker threads' round


class AnswerRefused(Exception):
    """The answer does not prove the identity; ``response_code`` says how to reply."""

    def __init__(self, response_code: ResponseCode, message: str, reason: str):
        super().__init__(message)
        self.response_code = response_code
        self.reason = reason  # metrics label

    @property
    def message(self) -> str:
        return str(self.args[0])


# What to do when the identity lives on another server: ask its home server (opcode 201),
# returning whether the answer is valid; None when that server cannot be found.
RemoteCheck = Callable[[str, int, bytes, bytes, bytes], Awaitable[bool | None]]


class AnswerChecker:
    def __init__(
        self,
        registry: Registry,
        vault: SecretVault,
        gate: AuthGate,
        *,
        seckey_forms: frozenset[SeckeyForm] | None = None,
        max_pbkdf2_iterations: int = 100_000,
        max_keys_tried: int = MAX_KEYS_TRIED,
        remote: RemoteCheck | None = None,
        held_here: Callable[[str], Awaitable[bool]] | None = None,
    ):
        self.registry = registry
        self.vault = vault
        self.gate = gate
        self.seckey_forms = seckey_forms
        self.max_pbkdf2_iterations = max_pbkdf2_iterations
        self.max_keys_tried = max_keys_tried
        self.remote = remote
        # Whether an identity the registry lacks would be held here (then it does not
        # exist, and is answered locally); without it, every such identity is remote.
        self.held_here = held_here
        # What an identity without a usable key is checked against: keys nobody holds.
        self._dummy_secret = vault.seal(os.urandom(24))
        self._dummy_key: PublicKey = ec.generate_private_key(ec.SECP256R1()).public_key()

    async def check(
        self,
        auth_type: str,
        handle: str,
        index: int,
        nonce: bytes,
        digest: bytes,
        response: bytes,
        *,
        client: str = "unknown",
    ) -> Identity:
        """The identity ``index:handle`` the answer proves; AnswerRefused otherwise
        (TooManyFailures, ChecksBusy from the gate)."""
        who = f"{index}:{handle}"
        kind = auth_type.upper()
        if kind not in (SECKEY, PUBKEY):
            raise AnswerRefused(
                ResponseCode.AUTHENTICATION_FAILED,
                f"unknown authentication type {auth_type[:32]!r}",
                "bad_type",
            )
        key = normalise(handle)
        async with self.gate.attempt(client, key) as attempt:
            record = await self.registry.get_handle(key)
            if (
                record is None
                and self.remote is not None
                and not (self.held_here is not None and await self.held_here(handle))
            ):
                # Held elsewhere: its home server says (opcode 201, node.auth.native.remote).
                valid = await self.remote(handle, index, nonce, digest, response)
                if valid:
                    attempt.succeeded()
                    return Identity(handle, index, "native")
                reason = "bad_answer" if valid is False else "unverified"
            else:
                proven, reason = await self._check_local(
                    attempt, kind, record, index, nonce, digest, response
                )
                if proven is not None:
                    attempt.succeeded()
                    return proven
        raise AnswerRefused(
            ResponseCode.AUTHENTICATION_FAILED, f"authentication failed for {who}", reason
        )

    async def _check_local(
        self,
        attempt: Attempt,
        kind: str,
        record: Record | None,
        index: int,
        nonce: bytes,
        digest: bytes,
        response: bytes,
    ) -> tuple[Identity | None, str]:
        """(the identity proven, or None and why not)."""
        values = record.values if record is not None else ()
        candidates = [v for v in values if _of_type(v, kind) and index in (0, v.index)]
        tried = candidates[: self.max_keys_tried]
        self.gate.skipped("cap", len(candidates) - len(tried))
        if kind == SECKEY:
            usable = [v for v in tried if self.vault.key_of(v.data) is not None]
        else:
            usable = tried
        if not usable:
            # The work a wrong answer costs, on a key nobody holds; the same reply.
            if kind == SECKEY:
                await attempt.run(self._seckey_ok, self._dummy_secret, nonce, digest, response)
            else:
                await attempt.run(self._pubkey_ok, self._dummy_key, nonce, digest, response)
            if record is None:
                return None, "unknown_admin"
            if any(looks_hashed(v.data) for v in tried):
                # Its owner can fix this (idnode handle set-secret); the caller is not told.
                self.gate.quiet.log(
                    logging.INFO,
                    "%s:%s answered a challenge, but its secret is stored as a one-way hash, "
                    "which cannot check one; its owner sets it again (idnode handle set-secret)",
                    index,
                    record.handle,
                )
                return None, "hashed_secret"
            return None, "no_key"
        for n, value in enumerate(usable):
            if attempt.out_of_time:
                self.gate.skipped("budget", len(usable) - n)
                break
            check = self._seckey_ok if kind == SECKEY else self._pubkey_ok
            verdict = await attempt.run(check, value.data, nonce, digest, response)
            if isinstance(verdict, Unusable):
                self.gate.skipped(verdict.value)
            elif verdict:
                assert record is not None
                return Identity(record.handle, value.index, "native"), ""
        return None, "bad_answer"

    async def verify(
        self, handle: str, index: int, nonce: bytes, digest: bytes, response: bytes
    ) -> bool | None:
        """Opcode 201, a server asking whether an answer proves ``index:handle``: the
        kind of key is the identity's own (the request does not say). None when the
        identity is not held here. The checks share the worker threads (one turn per
        round for all of them) but reserve no failure: the asking server is not the
        guesser."""
        record = await self.registry.get_handle(normalise(handle))
        if record is None:
            return None
        kinds = {
            SECKEY if is_seckey(v) else PUBKEY
            for v in record.values
            if (is_seckey(v) or v.type.upper() == PUBKEY_TYPE) and index in (0, v.index)
        }
        async with self.gate.attempt(VERIFY_SOURCE, None, limited=False) as attempt:
            for kind in sorted(kinds):
                proven, _ = await self._check_local(
                    attempt, kind, record, index, nonce, digest, response
                )
                if proven is not None:
                    return True
        return False

    def _seckey_ok(self, stored: bytes, nonce: bytes, digest: bytes, response: bytes) -> bool:
        """In a worker thread: open the sealed secret, check the answer's MAC with it (a
        PBKDF2 first for the 0x22 form, bounded by max_pbkdf2_iterations)."""
        key = self.vault.key_of(stored)
        if key is None:
            return False
        form = check_seckey_answer(
            key,
            nonce,
            digest,
            response,
            allowed=self.seckey_forms,
            max_iterations=self.max_pbkdf2_iterations,
        )
        return form is not None

    @staticmethod
    def _pubkey_ok(
        data: bytes | PublicKey, nonce: bytes, digest: bytes, response: bytes
    ) -> bool | Unusable:
        """In a worker thread: read the stored key (skipped when over the cost bounds)
        and check the answer's signature with it."""
        key = usable_key(data) if isinstance(data, bytes) else data
        if isinstance(key, Unusable):
            return key
        return check_pubkey_answer(key, nonce, digest, response)


def _of_type(value: HandleValue, kind: str) -> bool:
    if kind == SECKEY:
        return is_seckey(value)
    return value.type.upper() == PUBKEY_TYPE
