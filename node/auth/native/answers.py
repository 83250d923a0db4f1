"""Checking a challenge answer (opcode 200, or the 201 a peer sends to ask) against the
identity's own HS_SECKEY or HS_PUBKEY values (docs/authentication.md, "Answer").

The identity must be held by this node's registry. A secret-key answer is a MAC keyed
with the secret itself, so it is checked with the secret the vault opens; a row still
in the older one-way form cannot be checked and says so. A public-key answer is checked
against the identity's HS_PUBKEY values (Handle key format, JWK or PEM text, as the IDIS
SDKs write them). Index 0 means "any value of that type", tried in index order and
bounded (``MAX_KEYS_TRIED``); PBKDF2 answers and signature checks run off the event
loop, at most ``max_concurrent`` at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from node.auth.identity import Identity
from node.auth.pubkey import load_public_key
from node.secrets.legacy import looks_hashed
from node.secrets.vault import SecretVault, is_seckey
from protocol.challenge import SeckeyForm, check_pubkey_answer, check_seckey_answer
from protocol.codes import ResponseCode
from protocol.errors import ValueFormatError
from protocol.handle import normalise
from protocol.values import HandleValue
from registry.rows import Record
from registry.store import Registry

SECKEY = "HS_SECKEY"
PUBKEY = "HS_PUBKEY"
PUBKEY_TYPE = "HS_PUBKEY"
MAX_KEYS_TRIED = 8


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
        *,
        seckey_forms: frozenset[SeckeyForm] | None = None,
        max_pbkdf2_iterations: int = 100_000,
        max_concurrent: int = 4,
        remote: RemoteCheck | None = None,
    ):
        self.registry = registry
        self.vault = vault
        self.seckey_forms = seckey_forms
        self.max_pbkdf2_iterations = max_pbkdf2_iterations
        self._slots = asyncio.Semaphore(max_concurrent)
        self.remote = remote

    async def check(
        self, auth_type: str, handle: str, index: int, nonce: bytes, digest: bytes, response: bytes
    ) -> Identity:
        """The identity ``index:handle`` the answer proves; AnswerRefused otherwise."""
        who = f"{index}:{handle}"
        failed = AnswerRefused(
            ResponseCode.AUTHENTICATION_FAILED, f"authentication failed for {who}", "bad_answer"
        )
        kind = auth_type.upper()
        if kind not in (SECKEY, PUBKEY):
            raise AnswerRefused(
                ResponseCode.AUTHENTICATION_FAILED,
                f"unknown authentication type {auth_type[:32]!r}",
                "bad_type",
            )
        record = await self.registry.get_handle(normalise(handle))
        if record is None:
            if self.remote is None:
                raise AnswerRefused(
                    ResponseCode.AUTHENTICATION_FAILED,
                    f"authentication failed for {who}",
                    "unknown_admin",
                )
            # Held elsewhere: its home server says (opcode 201, node.auth.native.remote).
            valid = await self.remote(handle, index, nonce, digest, response)
            if valid:
                return Identity(handle, index, "native")
            if valid is False:
                raise failed
            raise AnswerRefused(
                ResponseCode.AUTHENTICATION_FAILED,
                f"authentication failed for {who}: no home server could verify it",
                "unverified",
            )
        return await self._check_local(kind, record, index, nonce, digest, response)

    async def _check_local(
        self, kind: str, record: Record, index: int, nonce: bytes, digest: bytes, response: bytes
    ) -> Identity:
        who = f"{index}:{record.handle}"
        failed = AnswerRefused(
            ResponseCode.AUTHENTICATION_FAILED, f"authentication failed for {who}", "bad_answer"
        )
        candidates = [
            v for v in record.values if _of_type(v, kind) and (index == 0 or v.index == index)
        ][:MAX_KEYS_TRIED]
        if not candidates:
            raise AnswerRefused(failed.response_code, f"authentication failed for {who}", "no_key")
        hashed_only = True
        for value in candidates:
            if kind == SECKEY:
                key = self.vault.key_of(value.data)
                if key is None:
                    continue
                hashed_only = False
                ok = await self._run(self._seckey_ok, key, nonce, digest, response)
            else:
                hashed_only = False
                try:
                    public = load_public_key(value.data)
                except ValueFormatError:
                    continue
                ok = await self._run(check_pubkey_answer, public, nonce, digest, response)
            if ok:
                return Identity(record.handle, value.index, "native")
        if kind == SECKEY and hashed_only and any(looks_hashed(v.data) for v in candidates):
            raise AnswerRefused(
                ResponseCode.AUTHENTICATION_FAILED,
                f"authentication failed for {who}: its secret is stored as a one-way hash, which "
                "cannot check a challenge answer; its owner sets it again (idnode handle set-secret)",
                "hashed_secret",
            )
        raise failed

    async def verify(
        self, handle: str, index: int, nonce: bytes, digest: bytes, response: bytes
    ) -> bool | None:
        """Opcode 201, a server asking whether an answer proves ``index:handle``: the
        kind of key is the identity's own (the request does not say). None when the
        identity is not held here."""
        record = await self.registry.get_handle(normalise(handle))
        if record is None:
            return None
        kinds = {
            SECKEY if is_seckey(v) else PUBKEY
            for v in record.values
            if (is_seckey(v) or v.type.upper() == PUBKEY_TYPE) and index in (0, v.index)
        }
        for kind in sorted(kinds):
            try:
                await self._check_local(kind, record, index, nonce, digest, response)
                return True
            except AnswerRefused:
                continue
        return False

    def _seckey_ok(self, key: bytes, nonce: bytes, digest: bytes, response: bytes) -> bool:
        form = check_seckey_answer(
            key,
            nonce,
            digest,
            response,
            allowed=self.seckey_forms,
            max_iterations=self.max_pbkdf2_iterations,
        )
        return form is not None

    async def _run(self, check: Callable[..., bool], *args: object) -> bool:
        async with self._slots:
            return await asyncio.to_thread(check, *args)


def _of_type(value: HandleValue, kind: str) -> bool:
    if kind == SECKEY:
        return is_seckey(value)
    return value.type.upper() == PUBKEY_TYPE
