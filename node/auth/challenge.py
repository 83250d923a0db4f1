"""Session authentication: ``Authorization: Handle sessionId=...`` and challenge answers.

The answer, as the reference checks it (``StandardHandleAuthenticator`` +
``verifyPublicKeyIdentityViaResolver``) and its Python/JS clients compute it::

    signature = Sign_<alg>(private key, nonce_bytes || cnonce_bytes)

where ``nonce_bytes`` is the session's nonce (sent base64 in the session reply) and
``cnonce_bytes`` the base64-decoded ``cnonce`` the client picked; ``signature`` travels
base64. ``type`` is HS_PUBKEY; ``id`` is ``index:handle`` (index 0: any HS_PUBKEY value
of the handle, the one that verifies becomes the identity's index, as the reference).

HS_SECKEY answers are refused with 403. The node could check them (secrets are sealed,
not hashed: node.secrets.vault), but how a REST client carries the secret-key forms
(the hash of ``key || nonce || cnonce || key``, HMAC, PBKDF2 with the client's salt and
iterations) in the ``signature`` field is not pinned down by any capture we hold, and a
guess would fail closed for every client anyway. Secret-key holders get a session with
``POST /api/sessions`` and HTTP Basic (created authenticated, as the reference's session
servlet does), or answer the native challenge, which takes every form.

Signatures are verified in the authentication worker threads, each answer reserving its
failure first (``node.auth.gate``); keys over the cost bounds are skipped unverified, at
most ``max_keys_tried`` are tried for index 0, and an identity with no key is checked
against a dummy key, so it answers like a wrong signature, in the same time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from node.auth.gate import Attempt, AuthGate
from node.auth.handleauth import (
    MAX_CNONCE_BYTES,
    MAX_SIGNATURE_BYTES,
    HandleAuthorization,
    decode_b64,
    is_handle_header,
    parse_admin_id,
    parse_handle_authorization,
)
from node.auth.identity import (
    AuthContext,
    CredentialsRejected,
    Identity,
    MalformedCredentials,
    MethodRefused,
    SessionUnknown,
)
from node.auth.pubkey import Unusable, hash_for_alg, usable_key, verify_signature
from node.auth.sessions import SessionStore
from protocol.handle import normalise
from protocol.keys import PublicKey
from protocol.values import HandleValue
from registry.store import Registry

MAX_KEYS_TRIED = 8

PUBKEY_TYPE = "HS_PUBKEY"
SECKEY_TYPE = "HS_SECKEY"
SECKEY_REFUSED = (
    "HS_SECKEY challenge answers are not accepted over REST. Authenticate the session with "
    "HS_PUBKEY, or create it already authenticated: POST /api/sessions with HTTP Basic "
    "credentials (index:handle and the secret)"
)


def is_pubkey(value_type: str) -> bool:
    return value_type.upper() == PUBKEY_TYPE


def _signature_check(
    data: bytes | PublicKey, alg: hashes.HashAlgorithm, message: bytes, signature: bytes
) -> bool | Unusable:
    """In a worker thread: read the stored key (unless given) and verify with it."""
    key = usable_key(data) if isinstance(data, bytes) else data
    if isinstance(key, Unusable):
        return key
    return verify_signature(key, alg, message, signature)


class ChallengeVerifier:
    """Checks one challenge answer against the admin's HS_PUBKEY values in this node's
    registry (a remote admin would need the reference's VERIFY_RESPONSE round trip)."""

    def __init__(self, registry: Registry, gate: AuthGate, *, max_keys_tried: int = MAX_KEYS_TRIED):
        self.registry = registry
        self.gate = gate
        self.max_keys_tried = max_keys_tried
        # What an identity without keys is checked against: a key nobody holds.
        self._dummy = ec.generate_private_key(ec.SECP256R1()).public_key()

    async def verify(
        self, nonce: bytes, auth: HandleAuthorization, *, client: str = "unknown"
    ) -> Identity:
        missing = auth.missing_answer_fields()
        if missing:
            raise MalformedCredentials(f"challenge answer lacks {', '.join(missing)}")
        kind = (auth.get("type") or "").upper()
        if kind == SECKEY_TYPE:
            raise MethodRefused(SECKEY_REFUSED, "seckey_unsupported")
        if kind != PUBKEY_TYPE:
            raise MalformedCredentials(f"challenge answer type {kind[:32]!r} is not HS_PUBKEY")
        alg = hash_for_alg(auth.get("alg") or "")
        if alg is None:
            raise MalformedCredentials("challenge answer alg must be SHA256 or SHA1")
        cnonce = decode_b64(auth.get("cnonce") or "", "cnonce", MAX_CNONCE_BYTES)
        signature = decode_b64(auth.get("signature") or "", "signature", MAX_SIGNATURE_BYTES)
        index, handle = parse_admin_id(auth.get("id") or "")
        failure = f"authentication failed for {index}:{handle}"
        key = normalise(handle)
        record = await self.registry.get_handle(key)
        values = record.values if record is not None else ()
        keys = sorted(
            (v for v in values if is_pubkey(v.type) and index in (0, v.index)),
            key=lambda v: v.index,
        )
        message = nonce + cnonce
        async with self.gate.attempt(client, key) as attempt:
            proven = await self._try(attempt, keys, alg, message, signature)
            if proven is not None:
                attempt.succeeded()
                assert record is not None
                return Identity(record.handle, proven.index, "session")
        reason = (
            "unknown_admin" if record is None else "no_public_key" if not keys else "bad_signature"
        )
        raise CredentialsRejected(failure, reason, counted=True)

    async def _try(
        self,
        attempt: Attempt,
        keys: Sequence[HandleValue],
        alg: hashes.HashAlgorithm,
        message: bytes,
        signature: bytes,
    ) -> HandleValue | None:
        """The value whose key verifies, trying at most ``max_keys_tried``; with none to
        try, a check against the dummy key (the same work a wrong key costs)."""
        tried = list(keys[: self.max_keys_tried])
        self.gate.skipped("cap", len(keys) - len(tried))
        if not tried:
            await attempt.run(_signature_check, self._dummy, alg, message, signature)
            return None
        for n, value in enumerate(tried):
            if attempt.out_of_time:
                self.gate.skipped("budget", len(tried) - n)
                break
            verdict = await attempt.run(_signature_check, value.data, alg, message, signature)
            if isinstance(verdict, Unusable):
                # An unreadable or over-costly value proves nothing; another may verify.
                self.gate.skipped(verdict.value)
            elif verdict:
                return value
        return None


class SessionScheme:
    """Claims every ``Authorization: Handle`` header except ``clientCert="true"``."""

    name = "session"
    sends_secret = True  # the session id is a bearer credential: the transport policy applies

    def __init__(
        self, store: SessionStore, verifier: ChallengeVerifier, *, monotonic: Callable[[], float]
    ):
        self.store = store
        self.verifier = verifier
        self.monotonic = monotonic

    def claims(self, ctx: AuthContext) -> bool:
        header = ctx.authorization
        if not is_handle_header(header):
            return False
        assert header is not None
        try:
            return not parse_handle_authorization(header).client_cert
        except MalformedCredentials:
            return True  # ours to reject, with the parse error

    async def authenticate(self, ctx: AuthContext) -> Identity | None:
        assert ctx.authorization is not None
        auth = parse_handle_authorization(ctx.authorization)
        if auth.version not in (None, "0"):
            raise MalformedCredentials("unknown version in Authorization: Handle (expected 0)")
        if not auth.session_id:
            raise MalformedCredentials(
                "Authorization: Handle needs sessionId=... (POST /api/sessions creates one)"
            )
        session = self.store.get(auth.session_id, self.monotonic())
        if session is None:
            raise SessionUnknown("unknown or expired session; POST /api/sessions for a new one")
        if not auth.authenticating:
            return session.identity
        identity = await self.verifier.verify(session.nonce, auth, client=ctx.client)
        self.store.authenticate(session, identity, self.monotonic())
        return identity
