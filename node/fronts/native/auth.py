"""Native authentication on the wire (docs/authentication.md): challenges, answers,
sessions, and the IDIS SDK logins, for the one native handler behind UDP and TCP.

- ``unwrap``: an encrypted message is decrypted with its session's key; a message
  carrying an HS_MAC is checked against its session (RC 500 unknown session, 502 bad
  MAC, 505 reused counter) and is then authenticated as the session is.
- ``challenge``: the 402 reply, its challenge kept under a fresh id (or the session's
  id inside a session) until answered or expired.
- ``answer``: opcode 200 checked against the pending challenge and the identity's keys;
  the caller then runs the original request as that identity.
- ``setup`` / ``terminate``: opcode 400 (Diffie-Hellman, signed with the HS_SITE key)
  and 401.
- ``login``: the IDIS SDKs' opcode 2000 (password) per connection.
- ``finish``: MAC (in a session, CERT set) or sign (CERT) and encrypt a reply.

Answers and logins pass the authentication gate shared with the HTTP front
(``node.auth.gate``): failures count per client network and per identity, each check
reserves its failure before it runs in the worker threads, and a full queue of checks
is RC 3 (too busy; an answer refused so may be sent again).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace

from node.auth import AuthGate, Identity, SecretKeyVerifier
from node.auth.identity import AuthError, ChecksBusy, CredentialsRejected, TooManyFailures
from node.auth.native.answers import AnswerChecker, AnswerRefused
from node.auth.native.challenges import Challenge, Expired, PendingChallenges
from node.auth.native.ids import new_id
from node.auth.native.sessions import CounterReused, NativeSession, NativeSessions
from node.fronts.native.peer import Peer
from node.resolution.site import Site
from protocol.bodies import ChallengeReply, HashType
from protocol.challenge import ChallengeAnswer, challenge_reply, make_nonce
from protocol.codes import OpCode, OpFlag, ResponseCode
from protocol.errors import ProtocolError
from protocol.handle import normalise
from protocol.idis import LoginRequest
from protocol.message import Message, decode, encode
from protocol.msgsign import sign_message
from protocol.negotiate import at_least, build_reply
from protocol.session import (
    IV_BYTES,
    DHPublicKey,
    SessionMode,
    SessionSetupReply,
    SessionSetupRequest,
    check_dh_group,
    check_mac,
    decrypt_message,
    dh_keypair,
    dh_reply_data,
    dh_session_key,
    encrypt_message,
    mac_message,
)

HS_MAC = "HS_MAC"


class Refusal(Exception):
    """Answer with this response code; ``reply_to`` the request it answers (the answer
    itself for an expired challenge: admin capture #13)."""

    def __init__(self, response_code: ResponseCode, message: str = "", *, reason: str = ""):
        super().__init__(message)
        self.response_code = response_code
        self.reason = reason or response_code.name.lower()

    @property
    def message(self) -> str:
        return str(self.args[0])


def _bad_ciphertext() -> Refusal:
    return Refusal(ResponseCode.SESSION_KEY_INVALID, "session authentication failed")


@dataclass(frozen=True, slots=True)
class Unwrapped:
    """A request as the handler sees it after ``unwrap``."""

    request: Message
    session: NativeSession | None  # the live session it came in, MAC checked
    identity: Identity | None  # who it is authenticated as (session, or connection login)
    encrypted: bool


class NativeAuth:
    def __init__(
        self,
        checker: AnswerChecker,
        secrets: SecretKeyVerifier,
        gate: AuthGate,
        site: Callable[[], Site],
        *,
        challenge_timeout_s: float,
        sessions: NativeSessions,
        login_lifetime_s: float,
        monotonic: Callable[[], float],
        rate_limited: Callable[[], None] = lambda: None,
    ):
        self.checker = checker
        self.secrets = secrets  # IDIS password logins, checked as HTTP Basic is
        self.site = site
        self.challenges = PendingChallenges(timeout_s=challenge_timeout_s)
        self.sessions = sessions
        self.login_lifetime_s = login_lifetime_s
        self.monotonic = monotonic
        # Failed answers and logins per client network and identity, shared with the
        # HTTP front: past the limit a client gets no more checks for a while.
        self.gate = gate
        self.rate_limited = rate_limited

    def _taken(self, candidate: int) -> bool:
        return candidate in self.sessions or candidate in self.challenges

    # -- incoming ---------------------------------------------------------------------

    def decrypt(self, data: bytes, session_id: int) -> bytes:
        session = self.sessions.get(session_id, self.monotonic())
        if session is None:
            raise Refusal(ResponseCode.SESSION_TIMEOUT, f"no session {session_id} to decrypt with")
        try:
            return decrypt_message(data, session.key)
        except ProtocolError:
            # CBC has no integrity of its own: bad padding is a bad MAC to the client.
            raise _bad_ciphertext() from None

    @staticmethod
    def decode_decrypted(data: bytes) -> Message:
        """The message ``decrypt`` returned. One wrong key or tampered block in 256 still
        ends in valid padding; what it decrypts to is garbage and gets the same answer as
        bad padding, never a parse error naming its bytes: anything else would tell a
        prober which of its guesses padded well (a padding oracle)."""
        try:
            return decode(data)
        except ProtocolError:
            raise _bad_ciphertext() from None

    def unwrap(self, request: Message, peer: Peer, encrypted: bool) -> Unwrapped:
        now = self.monotonic()
        sid = request.envelope.session_id
        session = self.sessions.get(sid, now) if sid else None
        cred = request.credential
        if cred is not None and cred.type == HS_MAC:
            if session is None:
                raise Refusal(
                    ResponseCode.SESSION_TIMEOUT, f"no session {sid}", reason="unknown_session"
                )
            if not check_mac(request, session.key):
                raise Refusal(
                    ResponseCode.SESSION_KEY_INVALID,
                    "session authentication failed",
                    reason="bad_mac",
                )
            try:
                session.accept_counter(cred.signer_index)
            except CounterReused as exc:
                raise Refusal(ResponseCode.SESSION_INVALID, str(exc), reason="replayed") from None
            return Unwrapped(request, session, session.authenticated, encrypted)
        if session is not None and session.authenticated is not None and _needs_mac(request):
            # Admin capture #15 e): an authenticated session's request without its MAC.
            raise Refusal(
                ResponseCode.INVALID_CREDENTIAL, "session request missing MAC code", reason="no_mac"
            )
        identity = peer.conn.identity(now) if peer.conn is not None else None
        return Unwrapped(request, session if encrypted else None, identity, encrypted)

    # -- challenges and answers -----------------------------------------------------------

    def challenge(self, u: Unwrapped, peer: Peer, now: float) -> Message:
        """The 402 reply to ``u.request``; the challenge kept until answered."""
        request = u.request
        cid = u.session.id if u.session is not None else new_id(self._taken)
        nonce = make_nonce()
        reply = challenge_reply(
            request, nonce, now=now, site_serial=self.site().info.serial, session_id=cid
        )
        if reply.digest is not None:
            hash_type, digest = reply.digest.hash_type, reply.digest.digest
        else:  # below 2.1: the MD5 digest rides in the body (admin capture #4)
            assert isinstance(reply.body, ChallengeReply) and reply.body.legacy_digest is not None
            hash_type, digest = HashType.MD5, reply.body.legacy_digest
        self.challenges.add(
            Challenge(
                cid,
                nonce,
                digest,
                hash_type,
                request,
                self.monotonic(),
                session_id=request.envelope.session_id,
                origin=peer.conn,
                source=_source(peer),
            ),
            self.monotonic(),
        )
        return reply

    async def answer(self, answer: Message, peer: Peer) -> tuple[Challenge, Identity]:
        """The challenge an opcode-200 answer answers, and the identity it proves.
        Refusal: 405 (too late) and 500 (unknown) reply to the answer itself; 403 (not
        proven) replies to the original request (admin captures #11-#14)."""
        body = answer.body
        if not isinstance(body, ChallengeAnswer):
            raise Refusal(ResponseCode.PROTOCOL_ERROR, "expected a challenge answer")
        client = self._check_limit(peer)
        try:
            challenge = self.challenges.take(answer.envelope.session_id, self.monotonic())
        except Expired as exc:
            raise Refusal(ResponseCode.AUTHEN_TIMEOUT, str(exc), reason="expired") from None
        if challenge is None:
            raise Refusal(
                ResponseCode.SESSION_TIMEOUT,
                f"invalid session id {answer.envelope.session_id}: no challenge is pending under it",
                reason="unknown_challenge",
            )
        try:
            identity = await self.checker.check(
                body.auth_type,
                body.handle,
                body.index,
                challenge.nonce,
                challenge.digest,
                body.response,
                client=client,
            )
        except AnswerRefused as exc:
            raise AnswerFailed(challenge, exc) from None
        except ChecksBusy as exc:
            self.challenges.add(challenge, self.monotonic())  # the same answer may come again
            raise self._refusal_of(exc) from None
        except AuthError as exc:
            raise self._refusal_of(exc) from None
        session = self.sessions.get(challenge.id, self.monotonic())
        if session is not None and _same_identity(session, identity):
            session.authenticated = identity  # later requests are checked by MAC alone
        if (
            challenge.origin is not None
            and challenge.request.header.opcode == OpCode.LOGIN_ID_SYSTEM
        ):
            challenge.origin.log_in(identity, self.monotonic(), self.login_lifetime_s)
        return challenge, identity

    async def login(self, request: Message, peer: Peer) -> Identity:
        """IDIS opcode 2000: a user handle and its password, for this connection."""
        body = request.body
        assert isinstance(body, LoginRequest)
        client = self._check_limit(peer)
        try:
            identity = await self.secrets.verify(
                body.user, 0, body.password.encode(), client=client, scheme="native"
            )
        except CredentialsRejected:
            raise Refusal(
                ResponseCode.AUTHENTICATION_FAILED,
                f"login failed for {body.user}",
                reason="bad_login",
            ) from None
        except AuthError as exc:
            raise self._refusal_of(exc) from None
        if peer.conn is not None:
            peer.conn.log_in(identity, self.monotonic(), self.login_lifetime_s)
        return identity

    def _check_limit(self, peer: Peer) -> str:
        """The client's key; a Refusal when its failures fill the window (nothing is
        read or checked for it)."""
        client = self.gate.client_key(peer.address[0] if peer.address is not None else None)
        blocked = self.gate.blocked(client, self.monotonic())
        if blocked is not None:
            raise self._refusal_of(blocked)
        return client

    def _refusal_of(self, exc: AuthError) -> Refusal:
        """The native reply to a refusal of the gate: RC 403 when rate-limited (as the
        reference answers a failed authentication), RC 3 when the checks are busy."""
        if isinstance(exc, TooManyFailures):
            self.rate_limited()
            return Refusal(ResponseCode.AUTHENTICATION_FAILED, exc.message, reason="rate_limited")
        if isinstance(exc, ChecksBusy):
            return Refusal(
                ResponseCode.SERVER_TOO_BUSY, f"{exc.message}; retry later", reason="busy"
            )
        return Refusal(ResponseCode.AUTHENTICATION_FAILED, exc.message, reason=exc.reason)

    # -- sessions ---------------------------------------------------------------------------

    def setup(self, request: Message, now: float) -> Message:
        """Opcode 400 in Diffie-Hellman mode: a new session and our half of the key,
        the reply signed with the HS_SITE key (clients check it)."""
        body = request.body
        if not isinstance(body, SessionSetupRequest):
            raise Refusal(ResponseCode.PROTOCOL_ERROR, "expected a session setup request")
        if body.mode is not SessionMode.DIFFIE_HELLMAN or body.public_key is None:
            raise Refusal(
                ResponseCode.OPERATION_NOT_SUPPORTED,
                f"session mode {body.mode.name} is not supported: use Diffie-Hellman (4)",
            )
        try:
            client = DHPublicKey.from_bytes(body.public_key)
            check_dh_group(client)
        except ProtocolError as exc:
            raise Refusal(ResponseCode.SESSION_FAILED, exc.message) from None
        x, y = dh_keypair(client.p, client.g)
        key = dh_session_key(x, client.y, client.p)
        session = self.sessions.open(
            new_id(self._taken),
            key,
            body.identity_handle,
            body.identity_index,
            request.envelope.version,
            float(body.timeout_s),
            self.monotonic(),
        )
        data = dh_reply_data(DHPublicKey(y, client.p, client.g))
        reply = build_reply(
            request,
            ResponseCode.SUCCESS,
            SessionSetupReply(SessionMode.DIFFIE_HELLMAN, data),
            now=now,
            site_serial=self.site().info.serial,
            extra_flags=OpFlag.CERT,
        )
        reply = replace(reply, envelope=replace(reply.envelope, session_id=session.id))
        return sign_message(reply, self.site().key)

    def terminate(self, u: Unwrapped) -> None:
        if u.session is None:
            raise Refusal(ResponseCode.SESSION_TIMEOUT, "no session to terminate")
        self.sessions.close(u.session.id)

    # -- outgoing ------------------------------------------------------------------------------

    def finish(self, reply: Message, u: Unwrapped | None, *, private: bool = False) -> bytes:
        """The reply's bytes, MACed or signed as CERT asks, encrypted when the request was,
        or asked for it, or (from 2.8, in a session) when it carries non-public values."""
        request = u.request if u is not None else None
        session = u.session if u is not None else None
        if request is not None and OpFlag.ENCR in request.header.flags:
            reply = _flagged(reply, OpFlag.ENCR)  # echoed, as the reference does (capture #19)
        cert = request is not None and OpFlag.CERT in request.header.flags
        if cert and session is not None and request is not None and request.credential is not None:
            reply = mac_message(_flagged(reply, OpFlag.CERT), session.key, session.next_counter())
        elif cert:
            reply = sign_message(_flagged(reply, OpFlag.CERT), self.site().key)
        data = encode(reply)
        if (
            session is not None
            and request is not None
            and (
                (u is not None and u.encrypted)
                or OpFlag.ENCR in request.header.flags
                or (private and at_least(reply.envelope.version, (2, 8)))
            )
        ):
            data = encrypt_message(data, session.key, os.urandom(IV_BYTES))
        return data


class AnswerFailed(Refusal):
    """An answer that did not prove the identity: RC 403 to the original request."""

    def __init__(self, challenge: Challenge, refused: AnswerRefused):
        super().__init__(refused.response_code, refused.message, reason=refused.reason)
        self.challenge = challenge


def _source(peer: Peer) -> str:
    return peer.address[0] if peer.address is not None else "unknown"


def _flagged(reply: Message, flag: OpFlag) -> Message:
    return replace(reply, header=replace(reply.header, flags=reply.header.flags | flag))


def _needs_mac(request: Message) -> bool:
    """Everything in an authenticated session is MACed, but the answers to challenges
    (the reference client never MACs those: admin capture #7)."""
    return request.header.opcode != OpCode.CHALLENGE_RESPONSE


def _same_identity(session: NativeSession, identity: Identity) -> bool:
    return normalise(session.identity_handle) == identity.key and session.identity_index in (
        0,
        identity.index,
    )
