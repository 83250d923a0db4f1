"""The transport-independent native handler: a whole request message in, the reply
messages out. The UDP and TCP fronts only frame bytes and call ``handle``.

A request that cannot be decoded gets a protocol-error reply with its request id echoed
(silence only when not even an envelope arrived); a bug in an operation gets RC 2,
never a dead connection. Authentication (challenges, sessions, logins) is
``node.fronts.native.auth``; administration ``node.fronts.native.admin``.

A request is answered as the identity it is authenticated as: a MACed request in an
authenticated session, a request on a connection that logged in (IDIS SDKs), or the
original request of a challenge once the answer proved who sent it. Without one,
administration and the reading of non-public values are challenged (RC 402), as the
reference does.

Replies to certified (CERT) requests are signed by ``node.fronts.native.certify``: off
the event loop, rationed per source network, errors to unauthenticated callers never
(see there for which replies are signed and why).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace

from node.auth import Authorizer, Denied, Identity
from node.fronts.native.admin import ADMIN_OPCODES, NativeAdmin, Refused
from node.fronts.native.auth import AnswerFailed, NativeAuth, Refusal, Unwrapped
from node.fronts.native.certify import Certifier, SigningRefused, signs
from node.fronts.native.overcap import TOO_LARGE, wire_bytes
from node.fronts.native.peer import Peer
from node.fronts.native.quick import QuickResolution
from node.resolution.cache.records import Entry, RecordCache
from node.resolution.cache.stats import FrontStats
from node.resolution.forward.build import RecursionPolicy, count_forwarding
from node.resolution.outcomes import Found, HandleNotFound, PrefixReferral, ValuesNotFound
from node.resolution.resolver import Resolver, WireFound
from node.resolution.site import Site
from node.runtime.accesslog import reply_code, request_handle
from node.runtime.lograte import LogEvery
from node.runtime.metrics import NodeMetrics
from protocol.admin import EmptyReply
from protocol.authbodies import VerifyChallengeReply, VerifyChallengeRequest
from protocol.bodies import (
    Body,
    ErrorReply,
    ReferralReply,
    ResolutionReply,
    ResolutionRequest,
    SiteInfoReply,
    resolution_reply_body,
)
from protocol.codes import OpCode, OpFlag, ResponseCode
from protocol.errors import ProtocolError
from protocol.message import (
    ENVELOPE_BYTES,
    MAX_MESSAGE_BYTES,
    NO_FLAGS,
    Envelope,
    EnvelopeFlag,
    Header,
    MalformedMessage,
    Message,
    decode,
    encode,
)
from protocol.negotiate import at_least, build_reply, reply_version
from protocol.replycache import ReplyTemplate, resolution_shape
from protocol.values import HandleValue
from registry.errors import DatabaseUnavailable

log = logging.getLogger("idnode.native")

Reply = bytes | list[bytes] | None
Operation = Callable[[Unwrapped, bytes, Peer, float, Identity | None], Awaitable[Reply]]


class NativeReply(ReplyTemplate):
    """A ready-to-send resolution reply kept in the cache (node.resolution.cache.records.Kept)."""

    __slots__ = ("entry",)
    entry: Entry

    def nbytes(self) -> int:
        return len(self.head)  # the tail, if any, is the entry's own wire bytes


def _host(peer: Peer) -> str | None:
    return peer.address[0] if peer.address is not None else None


def _op_name(opcode: int) -> str:
    try:
        return OpCode(opcode).name.lower()
    except ValueError:
        return "unknown"


class NativeHandler:
    def __init__(
        self,
        resolver: Resolver,
        site: Site,
        metrics: NodeMetrics,
        *,
        clock: Callable[[], float] = time.time,
        cache: RecordCache | None = None,
        auth: NativeAuth | None = None,
        admin: NativeAdmin | None = None,
        authorizer: Authorizer | None = None,
        recursion: RecursionPolicy | None = None,
        signed_replies_per_s: float = 50,
        sign_queue_max: int = 64,
        rate_limit_exempt_networks: Iterable[str] = ("127.0.0.0/8", "::1/128"),
        sign_workers: int | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self.resolver = resolver
        self.site = site
        self.metrics = metrics
        self.clock = clock
        self.auth = auth
        self.admin = admin
        self.authorizer = authorizer
        # Who may be answered through the tree for prefixes served elsewhere (None: no
        # forwarding on this node).
        self.recursion = recursion
        # Ready-to-send resolution replies, shared by the UDP and TCP fronts (same bytes).
        self.cache = cache
        self.replies = cache.reply_map("native") if cache is not None else None
        self.front_stats = {t: FrontStats() for t in ("udp", "tcp")}
        # Misses of plain anonymous resolutions, answered from the reply heads the full
        # path has made (node.fronts.native.quick).
        self.quick: QuickResolution | None = None
        if cache is not None and self.replies is not None:
            self.quick = QuickResolution(
                resolver,
                cache,
                self.replies,
                metrics,
                self.front_stats,
                NativeReply,
                serial=lambda: self.serial,
                clock=clock,
            )
        # Every request meets a registry that is down: say so once per interval, not per request.
        self._unavailable_log = LogEvery(log)
        # Signatures for CERT replies (the site key read at each use: the site may be
        # replaced once the ports are known).
        self.certifier = Certifier(
            lambda: self.site.key,
            metrics,
            rate_per_s=signed_replies_per_s,
            queue_max=sign_queue_max,
            exempt=rate_limit_exempt_networks,
            workers=sign_workers,
            monotonic=monotonic,
        )
        self.operations: dict[int, Operation] = {
            OpCode.RESOLUTION: self.op_resolution,
            OpCode.GET_SITE_INFO: self.op_site_info,
        }
        if auth is not None:
            self.operations |= {
                OpCode.CHALLENGE_RESPONSE: self.op_answer,
                OpCode.VERIFY_RESPONSE: self.op_verify,
                OpCode.SESSION_SETUP: self.op_session_setup,
                OpCode.SESSION_TERMINATE: self.op_session_terminate,
                OpCode.LOGIN: self.op_login,
                OpCode.LOGIN_ID_SYSTEM: self.op_login_id_system,
            }
            if admin is not None:
                self.operations |= dict.fromkeys(ADMIN_OPCODES, self.op_admin)

    def close(self) -> None:
        """Stop the signing threads (at shutdown, once the fronts have drained)."""
        self.certifier.close()

    def may_recurse(self, host: str | None) -> bool:
        return self.recursion is not None and self.recursion.allows(host)

    @property
    def serial(self) -> int:
        return self.site.info.serial

    # -- replies ----------------------------------------------------------------------------

    def _message(
        self, request: Message, rc: int, body: Body | bytes, now: float, flags: OpFlag = NO_FLAGS
    ) -> Message:
        return build_reply(request, rc, body, now=now, site_serial=self.serial, extra_flags=flags)

    async def _reply(
        self,
        u: Unwrapped,
        rc: int,
        body: Body | bytes,
        now: float,
        peer: Peer,
        *,
        op: str | None = None,
        private: bool = False,
        flags: OpFlag = NO_FLAGS,
        keep: Callable[[bytes], None] | None = None,
    ) -> bytes:
        message = self._message(u.request, rc, body, now, flags)
        return await self._send(message, u, now, peer, op=op, private=private, keep=keep)

    async def _send(
        self,
        message: Message,
        u: Unwrapped,
        now: float,
        peer: Peer,
        *,
        op: str | None = None,
        private: bool = False,
        keep: Callable[[bytes], None] | None = None,
    ) -> bytes:
        """The reply's bytes: signed or MACed as CERT asks (and allowed), encrypted as the
        session asks. ``op``: count the request under this operation, with the response
        code actually sent (RC 3 when no signature could be made, RC 2 when too large for
        UDP). ``keep`` is given the whole reply, before any UDP cap replaces it."""
        request = u.request
        rc = message.header.response_code
        cap = peer.max_reply_bytes  # over UDP
        too_large = False
        if OpFlag.CERT in request.header.flags and not _maced(u):
            authenticated = u.identity is not None
            sign = signs(rc, authenticated)
            # Over the UDP cap before its signature is even added: not worth signing.
            too_large = sign and cap is not None and _over(encode(message), cap)
            if sign and not too_large:
                if self.auth is not None and OpFlag.ENCR in request.header.flags:
                    message = _flagged(message, OpFlag.ENCR)  # as finish does, before signing
                try:
                    message = await self.certifier.sign(
                        message, _host(peer), rationed=not authenticated
                    )
                except SigningRefused as exc:
                    rc = ResponseCode.SERVER_TOO_BUSY
                    message = self._message(request, rc, ErrorReply(exc.message), now)
            else:
                self.certifier.unsigned()
            u = _uncertified(u)  # signed here, or not at all: finish must not sign it again
        if too_large:
            data = b""
        elif self.auth is not None:
            data = self.auth.finish(message, u, private=private)
        else:
            data = encode(message)
        if keep is not None and not too_large:
            keep(data)
        if cap is not None and (too_large or _over(data, cap)):
            # The small RC 2 that sends the client to TCP (node.fronts.native.overcap):
            # never signed, and counted under the code actually sent.
            self.metrics.udp_too_large.inc()
            rc = ResponseCode.ERROR
            data = encode(self._message(request, rc, ErrorReply(TOO_LARGE), now))
        if op is not None:
            self._count(peer, op, rc)
        return data

    async def _error(
        self, u: Unwrapped, rc: int, message: str, now: float, peer: Peer, *, op: str | None = None
    ) -> bytes:
        return await self._reply(u, rc, ErrorReply(message), now, peer, op=op)

    # -- the entry point -------------------------------------------------------------------

    async def handle(self, data: bytes, peer: Peer) -> Reply:
        """Answer one request message (envelope included); None means stay silent."""
        now = self.clock()
        started = time.perf_counter()
        encrypted = False
        try:
            envelope = Envelope.from_wire(data)
            framed = envelope.length == len(data) - ENVELOPE_BYTES <= MAX_MESSAGE_BYTES
            if EnvelopeFlag.ENCRYPTED in envelope.flags and framed and self.auth is not None:
                data = self.auth.decrypt(data, envelope.session_id)
                encrypted = True
                request = self.auth.decode_decrypted(data)
            else:
                request = decode(data)
        except MalformedMessage as exc:
            self.metrics.malformed.labels(peer.transport).inc()
            return self._malformed_reply(exc, now)
        except Refusal as exc:  # no session to decrypt with, or not ours to decrypt
            self.metrics.auth_failures.labels("native", exc.reason).inc()
            return self._envelope_reply(envelope, exc.response_code, exc.message, now)
        except ProtocolError:
            self.metrics.malformed.labels(peer.transport).inc()
            return None  # not even an envelope: nothing to address a reply to
        op = _op_name(request.header.opcode)
        u = Unwrapped(request, None, None, encrypted)
        if not request.is_request:
            self.metrics.malformed.labels(peer.transport).inc()
            return await self._error(
                u, ResponseCode.PROTOCOL_ERROR, "expected a request", now, peer
            )
        try:
            if self.auth is not None:
                u = self.auth.unwrap(request, peer, encrypted)
            operation = self.operations.get(request.header.opcode)
            if operation is None:
                reply: Reply = await self._error(
                    u,
                    ResponseCode.OPERATION_NOT_SUPPORTED,
                    f"operation {request.header.opcode} is not supported",
                    now,
                    peer,
                )
            else:
                reply = await operation(u, data, peer, now, u.identity)
        except Refusal as exc:
            self.metrics.auth_failures.labels("native", exc.reason).inc()
            reply = await self._error(u, exc.response_code, exc.message, now, peer)
        except ProtocolError as exc:
            reply = await self._error(u, exc.response_code, exc.message, now, peer)
        except DatabaseUnavailable as exc:
            # Nothing cached to fall back on: "too busy" tells the client to retry later.
            self._unavailable_log("native %s: %s", op, exc)
            self.metrics.registry_errors.labels(op).inc()
            reply = await self._error(
                u,
                ResponseCode.SERVER_TOO_BUSY,
                "the registry is unavailable; retry later",
                now,
                peer,
            )
        except Exception:
            log.exception("native %s request failed", op)
            self.metrics.registry_errors.labels(op).inc()
            reply = await self._error(u, ResponseCode.ERROR, "internal server error", now, peer)
        seconds = time.perf_counter() - started
        self.metrics.latency.labels(peer.transport, op).observe(seconds)
        if self.metrics.access.wanted():  # node.runtime.accesslog
            self.metrics.access.write(
                peer.transport, op, request_handle(request), reply_code(reply), seconds, _host(peer)
            )
        return reply

    def _malformed_reply(self, exc: MalformedMessage, now: float) -> bytes:
        """An error to a request we could not read: never signed (certify)."""
        opcode = exc.header.opcode if exc.header else 0
        # Echo the readable flags, but send no digest of a request we could not read.
        flags = (exc.header.flags if exc.header else OpFlag(0)) & ~OpFlag.RRDG
        if OpFlag.CERT in flags:
            self.certifier.unsigned()
        request = Message(exc.envelope, Header(opcode, flags=flags), ErrorReply())
        return encode(self._message(request, exc.response_code, ErrorReply(exc.message), now))

    def _envelope_reply(self, envelope: Envelope, rc: int, message: str, now: float) -> bytes:
        request = Message(envelope, Header(0), ErrorReply())
        return encode(self._message(request, rc, ErrorReply(message), now))

    def _count(self, peer: Peer, op: str, rc: int) -> None:
        self.metrics.requests.labels(peer.transport, op, str(int(rc))).inc()

    # -- resolution ----------------------------------------------------------------------------

    async def op_resolution(
        self, u: Unwrapped, data: bytes, peer: Peer, now: float, identity: Identity | None
    ) -> Reply:
        request = u.request
        body = request.body
        assert isinstance(body, ResolutionRequest)
        flags = request.header.flags
        if (
            OpFlag.CERT in flags
            and identity is None
            and at_least(reply_version(request.envelope), (2, 7))
            and self.certifier.exhausted(_host(peer))
        ):
            # From 2.7 a signature covers the request id, so none can be reused: over its
            # network's ration, this reply would be refused signing anyway. Say so before
            # resolving, so a flood of certified requests costs no lookups.
            return await self._error(
                u,
                ResponseCode.SERVER_TOO_BUSY,
                "too many signed replies for this network; retry later",
                now,
                peer,
                op="resolution",
            )
        if body.trailing:
            # Teleinfo's id-pointer-sdk appends 4 bytes after the type list; the reference
            # ignores them, so do we (and count them).
            self.metrics.trailing_bytes.labels(peer.transport).inc()
        recurse = OpFlag.RECU in flags and self.may_recurse(_host(peer))
        result = await self.resolver.resolve(
            body.handle,
            body.indexes,
            body.types,
            now,
            public_only=OpFlag.PUBL in flags,
            refer=OpFlag.DNRF not in flags,
            forward=recurse,
            recursion=request.header.recursion,
            # RC 303 exists from 2.5, and clients follow it from 2.10: resolve a referral
            # here for an older one (docs/idis.md).
            chase=request.envelope.version < (2, 10),
            # Anonymous: the values go out as stored, never decoded (resolver.WireFound).
            wire=identity is None,
        )
        if self.recursion is not None:
            count_forwarding(self.metrics, peer.transport, result, recurse)
        rc = result.response_code
        entry: Entry | None = None
        private = False
        reply: Body | bytes
        match result:
            case WireFound(selected=selected, entry=entry):
                if selected.private:  # as for Found: values only admins may read
                    return await self._challenge(u, peer, now)
                reply = resolution_reply_body(body.handle, selected.wire)
            case Found(values=values, entry=entry):
                if any(not v.public_read for v in values):
                    if identity is None:
                        # PUBL clear and values only admins may read: the reference
                        # challenges (docs/authentication.md, "Challenge").
                        return await self._challenge(u, peer, now)
                    try:
                        readable = await self._readable(identity, body.handle, values)
                    except Denied as exc:
                        return await self._error(
                            u, exc.response_code, exc.message, now, peer, op="resolution"
                        )
                    private = any(not v.public_read for v in readable)
                    values = tuple(readable)
                    entry = None  # answered for one identity: never kept
                if values:
                    reply = ResolutionReply(body.handle, values)
                else:
                    rc, reply = ResponseCode.VALUES_NOT_FOUND, ErrorReply()
            case PrefixReferral(handle=handle, values=values):
                reply = ReferralReply(handle, values)
            case HandleNotFound(entry=entry) | ValuesNotFound(entry=entry):
                reply = ErrorReply()  # the reference says nothing more on RC 100 / 200
            case _:
                reply = ErrorReply(result.message)
        keep = None
        if entry is not None and identity is None and not u.encrypted:
            keep = self._keeper(data, peer.transport, entry)
        return await self._reply(
            u, rc, reply, now, peer, op="resolution", private=private, keep=keep
        )

    def _keeper(self, data: bytes, transport: str, entry: Entry) -> Callable[[bytes], None] | None:
        """What keeps a reply to ``data`` for the hot path: the whole reply, which serves
        TCP and (within the cap) UDP alike."""
        replies, cache = self.replies, self.cache
        shape = resolution_shape(data)
        if replies is None or cache is None or shape is None:
            return None

        quick = self.quick

        def keep(encoded: bytes) -> None:
            self.front_stats[transport].misses += 1
            cache.add_reply(replies, shape, entry, NativeReply(encoded, entry.wire))
            if quick is not None:
                quick.learn(data, encoded)

        return keep

    async def _readable(
        self, identity: Identity, handle: str, values: tuple[HandleValue, ...]
    ) -> list[HandleValue]:
        assert self.authorizer is not None
        return await self.authorizer.readable(identity, handle, values, public_only=False)

    def cached_reply(
        self, data: bytes, transport: str, address: tuple[str, int] | None = None
    ) -> bytearray | None:
        """The hot path: the ready-to-send reply to ``data`` if one is cached and fresh,
        fitted to this request; None to take the full path. (The UDP front inlines
        these steps: there, each call and attribute lookup saved is measurable.)"""
        replies = self.replies
        if not replies:
            return None
        shape = resolution_shape(data)
        if shape is None:
            return None
        hit = replies.get(shape)
        if hit is None:
            return None
        entry = hit.entry
        assert self.cache is not None
        if entry.expires <= self.cache.monotonic():
            return None
        if entry.foreign and not self.may_recurse(address[0] if address else None):
            return None  # from upstream: for clients allowed recursion only
        self.cache.touch(entry)
        self.front_stats[transport].hit(hit.rc)
        return hit.fit(data, self.clock())  # type: ignore[no-any-return]

    async def op_site_info(
        self, u: Unwrapped, data: bytes, peer: Peer, now: float, identity: Identity | None
    ) -> Reply:
        return await self._reply(
            u, ResponseCode.SUCCESS, SiteInfoReply(self.site.info), now, peer, op="get_site_info"
        )

    # -- authentication ---------------------------------------------------------------------

    async def _challenge(self, u: Unwrapped, peer: Peer, now: float) -> Reply:
        assert self.auth is not None
        logging_in = u.request.header.opcode == OpCode.LOGIN_ID_SYSTEM
        if not logging_in and peer.conn is not None and peer.conn.logged_in_once:
            # An IDIS connection whose login expired: the SDK logs in again on 407.
            return await self._error(
                u,
                ResponseCode.LOGIN_AGAIN,
                "the login of this connection expired",
                now,
                peer,
                op=_op_name(u.request.header.opcode),
            )
        reply = self.auth.challenge(u, peer, now)
        return await self._send(reply, u, now, peer, op=_op_name(u.request.header.opcode))

    async def op_answer(
        self, u: Unwrapped, data: bytes, peer: Peer, now: float, identity: Identity | None
    ) -> Reply:
        assert self.auth is not None
        try:
            challenge, proven = await self.auth.answer(u.request, peer)
        except AnswerFailed as exc:
            # Not proven: RC 403 to the original request (admin capture #11).
            original = self._as_answered(exc.challenge.request, u.request)
            self.metrics.auth_failures.labels("native", exc.reason).inc()
            return await self._error(
                replace(u, request=original),
                exc.response_code,
                "",
                now,
                peer,
                op=_op_name(original.header.opcode),
            )
        # The original request, run as the identity the answer proved; its reply takes
        # the answer's request id and the original's session id (admin capture #1).
        original = self._as_answered(challenge.request, u.request)
        session = self.auth.sessions.get(challenge.id, self.auth.monotonic())
        answered = Unwrapped(
            original, session if original.credential else None, proven, u.encrypted
        )
        if original.header.opcode == OpCode.LOGIN_ID_SYSTEM:
            return await self._reply(
                answered, ResponseCode.SUCCESS, EmptyReply(), now, peer, op="login_id_system"
            )
        operation = self.operations[original.header.opcode]
        return await operation(answered, data, peer, now, proven)

    @staticmethod
    def _as_answered(original: Message, answer: Message) -> Message:
        env = replace(original.envelope, request_id=answer.envelope.request_id)
        header = replace(original.header, flags=original.header.flags & ~OpFlag.RRDG)
        return replace(original, envelope=env, header=header)

    async def op_verify(
        self, u: Unwrapped, data: bytes, peer: Peer, now: float, identity: Identity | None
    ) -> Reply:
        assert self.auth is not None
        body = u.request.body
        assert isinstance(body, VerifyChallengeRequest)
        valid = await self.auth.checker.verify(
            body.handle, body.index, body.nonce, body.digest, body.response
        )
        if valid is None:
            return await self._error(
                u,
                ResponseCode.HANDLE_NOT_FOUND,
                f"{body.index}:{body.handle} is not held here",
                now,
                peer,
                op="verify_response",
            )
        return await self._reply(
            u, ResponseCode.SUCCESS, VerifyChallengeReply(valid), now, peer, op="verify_response"
        )

    async def op_session_setup(
        self, u: Unwrapped, data: bytes, peer: Peer, now: float, identity: Identity | None
    ) -> Reply:
        assert self.auth is not None
        try:
            # Its reply is signed (in the event loop, by NativeAuth.setup, after two
            # modular exponentiations): it takes from the same ration.
            self.certifier.ration(_host(peer))
        except SigningRefused as exc:
            return await self._error(
                _uncertified(u),
                ResponseCode.SERVER_TOO_BUSY,
                exc.message,
                now,
                peer,
                op="session_setup",
            )
        reply = self.auth.setup(u.request, now)
        self._count(peer, "session_setup", ResponseCode.SUCCESS)
        return encode(reply)

    async def op_session_terminate(
        self, u: Unwrapped, data: bytes, peer: Peer, now: float, identity: Identity | None
    ) -> Reply:
        assert self.auth is not None
        self.auth.terminate(u)
        # The session is gone: a certified reply is signed, not MACed (admin capture #8).
        return await self._reply(
            replace(u, session=None),
            ResponseCode.SUCCESS,
            EmptyReply(),
            now,
            peer,
            op="session_terminate",
        )

    async def op_login(
        self, u: Unwrapped, data: bytes, peer: Peer, now: float, identity: Identity | None
    ) -> Reply:
        assert self.auth is not None
        await self.auth.login(u.request, peer)
        return await self._reply(u, ResponseCode.SUCCESS, EmptyReply(), now, peer, op="login")

    async def op_login_id_system(
        self, u: Unwrapped, data: bytes, peer: Peer, now: float, identity: Identity | None
    ) -> Reply:
        if identity is not None:  # this connection is logged in already: no challenge
            return await self._reply(
                u, ResponseCode.SUCCESS, EmptyReply(), now, peer, op="login_id_system"
            )
        return await self._challenge(u, peer, now)

    # -- administration -------------------------------------------------------------------------

    async def op_admin(
        self, u: Unwrapped, data: bytes, peer: Peer, now: float, identity: Identity | None
    ) -> Reply:
        assert self.admin is not None
        request = u.request
        op = _op_name(request.header.opcode)
        if peer.transport != "tcp":
            # The site record names TCP as the only native admin interface.
            return await self._error(
                u,
                ResponseCode.OPERATION_NOT_SUPPORTED,
                "administration is served over TCP",
                now,
                peer,
                op=op,
            )
        try:
            await self.admin.precheck(request)
            if identity is None:
                return await self._challenge(u, peer, now)
            parts = await self.admin.run(request, identity)
        except Refused as exc:
            return await self._error(u, exc.response_code, exc.message, now, peer, op=op)
        self._count(peer, op, ResponseCode.SUCCESS)
        return [
            await self._reply(
                u,
                ResponseCode.SUCCESS,
                part.body,
                now,
                peer,
                flags=OpFlag.CONT if part.more else NO_FLAGS,
            )
            for part in parts
        ]


def _over(data: bytes, cap: int) -> bool:
    """Whether one encoded message takes more than ``cap`` bytes of datagrams."""
    return wire_bytes(len(data)) > cap


def _maced(u: Unwrapped) -> bool:
    """Whether ``NativeAuth.finish`` MACs this request's CERT reply (in a session, the
    request MACed) rather than signing it."""
    return u.session is not None and u.request.credential is not None


def _flagged(message: Message, flag: OpFlag) -> Message:
    return replace(message, header=replace(message.header, flags=message.header.flags | flag))


def _uncertified(u: Unwrapped) -> Unwrapped:
    """``u`` as if it had not asked for CERT, so that ``NativeAuth.finish`` leaves the
    credential as it is (what it does with ENCR and encryption is unchanged)."""
    header = u.request.header
    return replace(
        u, request=replace(u.request, header=replace(header, flags=header.flags & ~OpFlag.CERT))
    )
