"""A native Handle administration client (docs/authentication.md): what ``idnode admin``
and the tests use to create, change, delete and list handles and home prefixes over the
native protocol, as the reference's tools do.

Every operation goes over one TCP connection (kept open, one request at a time, as the
IDIS SDKs do; the reference opens one per exchange, and the node takes both). A 402
challenge is answered with the credentials (secret key: the form of the message's
version, PBKDF2 from 2.7; public key: a signature) and the original operation's reply
comes back. With ``session=True`` a Diffie-Hellman session is set up first: the first
operation is challenged, the rest are MACed only.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from dataclasses import dataclass, field, replace
from types import TracebackType

from node.client.native import ClientError
from protocol.admin import (
    HandleListReply,
    HandleReply,
    HandleRequest,
    RemoveValuesRequest,
    ValuesRequest,
)
from protocol.authbodies import HS_PUBKEY, HS_SECKEY, ChallengeAnswer
from protocol.bodies import Body, ChallengeReply, ErrorReply, ResolutionReply, ResolutionRequest
from protocol.challenge import make_pubkey_answer, make_seckey_answer, seckey_form_for
from protocol.codes import OpCode, OpFlag, ResponseCode
from protocol.errors import ProtocolError
from protocol.message import (
    ENVELOPE_BYTES,
    LENGTH_OFFSET,
    MAX_MESSAGE_BYTES,
    NO_FLAGS,
    Envelope,
    EnvelopeFlag,
    Header,
    Message,
    Version,
    decode,
    encode,
)
from protocol.msgsign import SiteKey, SitePublicKey, verify_message
from protocol.session import (
    DHPublicKey,
    SessionMode,
    SessionSetupReply,
    SessionSetupRequest,
    decrypt_message,
    dh_keypair,
    dh_session_key,
    mac_message,
    parse_dh_reply_data,
)
from protocol.values import HandleValue

# RFC 2409 group 2 (1024-bit MODP, g = 2): the group the reference client sends (admin
# capture #7). RFC 3526 group 14 (2048 bits) works too (capture #16).
OAKLEY_GROUP_2 = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B2251"
    "4A08798E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C"
    "42E9A637ED6B0BFF5CB6F406B7EDEE386BFB5A899FA5AE9F24117C4B1FE649286651ECE65381FFFF"
    "FFFFFFFFFFFF",
    16,
)


@dataclass(frozen=True)
class Credentials:
    """Who the client authenticates as: an HS_SECKEY secret or an HS_PUBKEY private key."""

    handle: str
    index: int
    secret: bytes | None = field(default=None, repr=False)
    private_key: SiteKey | None = field(default=None, repr=False)

    def answer(self, nonce: bytes, digest: bytes, version: Version) -> ChallengeAnswer:
        if self.secret is not None:
            response = make_seckey_answer(self.secret, nonce, digest, seckey_form_for(version))
            return ChallengeAnswer(HS_SECKEY, self.handle, self.index, response)
        if self.private_key is not None:
            response = make_pubkey_answer(self.private_key, nonce, digest)
            return ChallengeAnswer(HS_PUBKEY, self.handle, self.index, response)
        raise ClientError("no secret and no private key to answer a challenge with")


class AdminError(ClientError):
    """The server refused the operation: ``response_code`` and its message."""

    def __init__(self, response_code: int, message: str):
        # Named as well as numbered: "AUTHENTICATION_FAILED (403)" is what an operator
        # can look up; a code no enum member names (another server's) stays a number.
        try:
            said = f"{ResponseCode(response_code).name} ({response_code})"
        except ValueError:
            said = f"RC {response_code}"
        super().__init__(f"{said}: {message}" if message else said)
        self.response_code = response_code
        self.message = message


@dataclass
class _Session:
    id: int
    key: bytes
    sent: int = 0


class AdminClient:
    def __init__(
        self,
        host: str,
        port: int,
        credentials: Credentials,
        *,
        timeout_s: float = 10.0,
        session: bool = False,
        version: Version = (2, 11),
        server_key: SitePublicKey | None = None,
    ):
        self.host, self.port = host, port
        # The server's HS_SITE public key: with it, a session setup reply must carry its
        # signature (the reference client checks it; without one, a man in the middle
        # could swap in its own half of the key exchange).
        self.server_key = server_key
        self.credentials = credentials
        self.timeout_s = timeout_s
        self.use_session = session
        self.version = version
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._session: _Session | None = None
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> AdminClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._streams is not None:
            writer = self._streams[1]
            self._streams = None
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    # -- operations -------------------------------------------------------------------------

    async def create(
        self,
        handle: str,
        values: tuple[HandleValue, ...],
        *,
        overwrite: bool = False,
        mint: bool = False,
    ) -> str:
        flags = (OpFlag.OVRW if overwrite else NO_FLAGS) | (OpFlag.MINT if mint else NO_FLAGS)
        [reply] = await self._call(OpCode.CREATE_HANDLE, ValuesRequest(handle, values), flags)
        return reply.body.handle if isinstance(reply.body, HandleReply) else handle

    async def add(self, handle: str, values: tuple[HandleValue, ...]) -> None:
        await self._call(OpCode.ADD_VALUE, ValuesRequest(handle, values))

    async def modify(self, handle: str, values: tuple[HandleValue, ...]) -> None:
        await self._call(OpCode.MODIFY_VALUE, ValuesRequest(handle, values))

    async def remove(self, handle: str, indexes: tuple[int, ...]) -> None:
        await self._call(OpCode.REMOVE_VALUE, RemoveValuesRequest(handle, indexes))

    async def delete(self, handle: str) -> None:
        await self._call(OpCode.DELETE_HANDLE, HandleRequest(handle))

    async def list_handles(self, prefix: str) -> list[str]:
        return await self._listing(OpCode.LIST_HANDLES, f"0.NA/{prefix}")

    async def home(self, prefix: str) -> None:
        await self._call(OpCode.HOME_NA, HandleRequest(f"0.NA/{prefix}"))

    async def unhome(self, prefix: str) -> None:
        await self._call(OpCode.UNHOME_NA, HandleRequest(f"0.NA/{prefix}"))

    async def list_homed(self) -> list[str]:
        return await self._listing(OpCode.LIST_HOMED_NAS, "/")

    async def resolve(
        self, handle: str, indexes: tuple[int, ...] = (), types: tuple[str, ...] = ()
    ) -> tuple[HandleValue, ...]:
        """A resolution without PUBL: the values, non-public ones included, that this
        identity may read (an HS_SECKEY's data as the server shows it)."""
        [reply] = await self._call(
            OpCode.RESOLUTION, ResolutionRequest(handle, indexes, types), OpFlag.RECU | OpFlag.CACR
        )
        if not isinstance(reply.body, ResolutionReply):
            raise ClientError(f"{handle} was answered with a {type(reply.body).__name__}")
        return reply.body.values

    async def _listing(self, opcode: OpCode, named: str) -> list[str]:
        out: list[str] = []
        for reply in await self._call(opcode, HandleRequest(named)):
            if isinstance(reply.body, HandleListReply):
                out += reply.body.handles
        return out

    # -- the exchange -----------------------------------------------------------------------

    async def _call(self, opcode: OpCode, body: Body, flags: OpFlag = NO_FLAGS) -> list[Message]:
        async with self._lock:
            try:
                return await asyncio.wait_for(
                    self._call_locked(opcode, body, flags), self.timeout_s
                )
            except TimeoutError:
                # Cut off mid-reply, the stream may hold the rest of a message that the
                # next call would read as an envelope: that call starts on a new connection.
                await self.close()
                raise ClientError(
                    f"no reply from {self.host}:{self.port} within {self.timeout_s:g} s"
                ) from None

    async def _call_locked(self, opcode: OpCode, body: Body, flags: OpFlag) -> list[Message]:
        if self.use_session and self._session is None:
            await self._setup_session()
        request = self._request(opcode, body, flags)
        replies = await self._exchange(request)
        first = replies[0]
        if first.header.response_code == ResponseCode.SESSION_TIMEOUT and self._session:
            # The server no longer knows the session (restarted, evicted or idle too long)
            # and did nothing: as the reference client, drop it and try once in a new one.
            self._session = None
            await self._setup_session()
            request = self._request(opcode, body, flags)
            replies = await self._exchange(request)
            first = replies[0]
        if first.header.response_code == ResponseCode.AUTHENTICATION_NEEDED:
            replies = await self._exchange(self._answer(request, first))
        last = replies[-1]
        if last.header.response_code != ResponseCode.SUCCESS:
            message = last.body.message if isinstance(last.body, ErrorReply) else ""
            raise AdminError(last.header.response_code, message)
        return replies

    def _request(self, opcode: OpCode, body: Body, flags: OpFlag, *, mac: bool = True) -> Message:
        env = Envelope(
            *self.version,
            suggested_major=self.version[0],
            suggested_minor=self.version[1],
            session_id=self._session.id if self._session else 0,
            request_id=secrets.randbits(31) or 1,
        )
        header = Header(
            opcode, flags=flags, site_serial=0xFFFF, expiration=int(time.time()) + 43_200
        )
        message = Message(env, header, body)
        if self._session is not None and mac:
            self._session.sent += 1
            message = mac_message(message, self._session.key, self._session.sent)
        return message

    def _answer(self, request: Message, challenge: Message) -> Message:
        body = challenge.body
        if not isinstance(body, ChallengeReply):
            raise ClientError("a 402 reply without a challenge")
        if challenge.digest is not None:
            digest = challenge.digest.digest
        elif body.legacy_digest is not None:
            digest = body.legacy_digest
        else:
            raise ClientError("a 402 reply without the digest of the request")
        answer = self.credentials.answer(body.nonce, digest, challenge.envelope.version)
        # The answer goes under the challenge's id and, as the reference client's, unMACed.
        message = self._request(OpCode.CHALLENGE_RESPONSE, answer, request.header.flags, mac=False)
        return replace(
            message, envelope=replace(message.envelope, session_id=challenge.envelope.session_id)
        )

    async def _setup_session(self) -> None:
        x, y = dh_keypair(OAKLEY_GROUP_2, 2)
        key = DHPublicKey(y, OAKLEY_GROUP_2, 2).to_bytes()
        body = SessionSetupRequest(
            SessionMode.DIFFIE_HELLMAN, 86_400, self.credentials.handle, self.credentials.index, key
        )
        [reply] = await self._exchange(self._request(OpCode.SESSION_SETUP, body, OpFlag.CERT))
        if reply.header.response_code != ResponseCode.SUCCESS or not isinstance(
            reply.body, SessionSetupReply
        ):
            message = reply.body.message if isinstance(reply.body, ErrorReply) else ""
            raise AdminError(reply.header.response_code, f"session setup failed: {message}")
        if self.server_key is not None and not verify_message(reply, self.server_key):
            raise ClientError(
                f"the session setup reply from {self.host}:{self.port} is not signed by the "
                "server's key"
            )
        _algorithm, server = parse_dh_reply_data(reply.body.data)
        self._session = _Session(
            reply.envelope.session_id, dh_session_key(x, server.y, OAKLEY_GROUP_2)
        )

    async def _exchange(self, request: Message) -> list[Message]:
        """Send one request and read its replies (several, CONT set on all but the last)."""
        reader, writer = await self._connect()
        try:
            writer.write(encode(request))
            await writer.drain()
            replies = []
            while True:
                reply = decode(self._decrypted(await _read_message(reader)))
                if reply.request_id != request.request_id:
                    continue  # not ours (a late reply on this connection)
                replies.append(reply)
                if OpFlag.CONT not in reply.header.flags:
                    return replies
        except (OSError, asyncio.IncompleteReadError, ProtocolError, ClientError) as exc:
            # ClientError: an oversized reply left unread; the connection is done with too.
            await self.close()
            raise ClientError(f"exchange with {self.host}:{self.port} failed: {exc}") from None

    def _decrypted(self, data: bytes) -> bytes:
        """From 2.8 a server encrypts, unasked, a reply in a session that carries values
        without public read (docs/authentication.md, "Refinements"): opened with the
        session key. Outside a session ``decode`` refuses such a message."""
        if self._session is not None and EnvelopeFlag.ENCRYPTED in Envelope.from_wire(data).flags:
            return decrypt_message(data, self._session.key)
        return data

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._streams is None:
            try:
                self._streams = await asyncio.open_connection(self.host, self.port)
            except OSError as exc:
                raise ClientError(
                    f"cannot reach {self.host}:{self.port}: {exc.strerror or exc}"
                ) from None
        return self._streams


async def _read_message(reader: asyncio.StreamReader) -> bytes:
    envelope = await reader.readexactly(ENVELOPE_BYTES)
    length = int.from_bytes(envelope[LENGTH_OFFSET : LENGTH_OFFSET + 4], "big")
    if length > MAX_MESSAGE_BYTES:
        raise ClientError(f"reply announces {length} bytes, more than {MAX_MESSAGE_BYTES}")
    return envelope + await reader.readexactly(length)
