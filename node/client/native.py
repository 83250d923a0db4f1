"""A native Handle client: UDP with retries, reassembly of fragmented replies, TCP
fallback (on silence, garbage, or an RC 2 over UDP, which servers send for answers too
large for UDP), all under one overall deadline (dnspython ``query._compute_times`` style).

Used by the tests, ``idnode resolve --native`` and, later, upstream forwarding.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import struct
import time
from collections.abc import Callable, Sequence

from protocol.bodies import HashType, ResolutionRequest, SiteInfoReply, SiteInfoRequest
from protocol.codes import OpCode, OpFlag, ResponseCode
from protocol.errors import ProtocolError
from protocol.fragment import Reassembler, fragment_encoded
from protocol.message import (
    ENVELOPE_BYTES,
    LENGTH_OFFSET,
    MAX_MESSAGE_BYTES,
    Envelope,
    EnvelopeFlag,
    Header,
    Message,
    decode,
    encode,
)
from protocol.msgsign import SitePublicKey, verify_message
from protocol.negotiate import digest_of
from protocol.structured import SiteInfo

# The reference client retries UDP at about 0.5, 1 and 1.5 s before trying TCP (docs/protocol.md).
UDP_ATTEMPT_TIMEOUTS_S = (0.5, 1.0, 1.5)
# What the reference client sends: RECU | CACR | PUBL (0x19000000).
DEFAULT_FLAGS = OpFlag.RECU | OpFlag.CACR | OpFlag.PUBL
_U32 = struct.Struct(">I")


class ClientError(Exception):
    """The server could not be reached or answered with garbage."""


class _UdpExchange(asyncio.DatagramProtocol):
    def __init__(self, request_id: int, on_forged: Callable[[str], None]) -> None:
        self.request_id = request_id
        self.on_forged = on_forged
        self.reassembler = Reassembler()
        self.done: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.done.done() or len(data) < ENVELOPE_BYTES:
            return
        if _U32.unpack_from(data, 8)[0] != self.request_id:
            # The socket is connected to the server and this exchange's id is its own:
            # another id is a forgery (or garbage); ignored, and told.
            self.on_forged("request id")
            return
        try:
            whole = self.reassembler.feed(data, time.monotonic(), addr)
        except ProtocolError as exc:
            self.done.set_exception(ClientError(f"bad reply fragment: {exc}"))
            return
        if whole is not None:
            self.done.set_result(whole)

    def error_received(self, exc: Exception) -> None:
        if not self.done.done():
            self.done.set_exception(ClientError(f"UDP error: {exc}"))


class NativeClient:
    def __init__(
        self,
        host: str,
        port: int = 2641,
        *,
        timeout_s: float = 5.0,
        udp: bool = True,
        udp_timeouts_s: Sequence[float] = UDP_ATTEMPT_TIMEOUTS_S,
        verify_key: SitePublicKey | None = None,
        on_forged: Callable[[str], None] = lambda what: None,
    ):
        self.host = host
        self.port = port
        self.timeout_s = timeout_s
        self.udp = udp
        self.udp_timeouts_s = tuple(udp_timeouts_s)
        # With a key (the server's HS_SITE public key), every request asks for a
        # certified reply (CERT) and a reply whose signature does not verify is refused.
        self.verify_key = verify_key
        # Called with what did not match when a reply is discarded as not answering the
        # request (request id, request digest): the caller counts them.
        self.on_forged = on_forged

    def _message(self, opcode: OpCode, body: object, flags: OpFlag) -> Message:
        if self.verify_key is not None:
            flags |= OpFlag.CERT
        env = Envelope(request_id=secrets.randbits(31) or 1)
        header = Header(
            opcode, flags=flags, site_serial=0xFFFF, expiration=int(time.time()) + 43_200
        )
        return Message(env, header, body)  # type: ignore[arg-type]

    async def request(self, message: Message) -> Message:
        """Send one request; UDP first (unless disabled), then TCP, within the deadline.
        With RRDG set, a reply must carry the digest of this very request."""
        reply = await self._exchange(message)
        if OpFlag.RRDG in message.header.flags and not _digest_matches(message, reply):
            self.on_forged("request digest")
            raise ClientError(
                f"the reply from {self.host}:{self.port} does not carry this request's digest"
            )
        if self.verify_key is not None and not verify_message(reply, self.verify_key):
            raise ClientError(
                f"the reply from {self.host}:{self.port} is not signed by the expected site key"
            )
        return reply

    async def _exchange(self, message: Message) -> Message:
        deadline = time.monotonic() + self.timeout_s
        data = encode(message)
        if self.udp:
            try:
                reply = await self._udp(data, message.request_id, deadline)
                if not reply[2] & EnvelopeFlag.TRUNCATED:
                    decoded = decode(reply)
                    # RC 2 over UDP: the answer is too large for UDP, or the server
                    # rations its UDP replies; TCP at once, as the reference client
                    # does (docs/protocol.md, "Making clients use TCP for large answers").
                    if decoded.header.response_code != ResponseCode.ERROR:
                        return decoded
            except (TimeoutError, ClientError, OSError, ProtocolError):
                pass  # no answer, garbage, or cut short: TCP while time remains
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ClientError(
                f"no reply from {self.host}:{self.port} within {self.timeout_s:.1f} s"
            )
        try:
            reply = await asyncio.wait_for(self._tcp(data), remaining)
        except TimeoutError:
            raise ClientError(
                f"no reply from {self.host}:{self.port} within {self.timeout_s:.1f} s"
            ) from None
        except OSError as exc:
            raise ClientError(
                f"cannot reach {self.host}:{self.port}: {exc.strerror or exc}"
            ) from None
        try:
            return decode(reply)
        except ProtocolError as exc:
            raise ClientError(f"undecodable reply: {exc}") from None

    async def _udp(self, data: bytes, request_id: int, deadline: float) -> bytes:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        transport, proto = await loop.create_datagram_endpoint(
            lambda: _UdpExchange(request_id, self.on_forged),
            remote_addr=(self.host, self.port),
            family=family,
        )
        try:
            for attempt_s in self.udp_timeouts_s:
                wait_s = min(attempt_s, deadline - time.monotonic())
                if wait_s <= 0:
                    break
                for datagram in fragment_encoded(data):
                    transport.sendto(datagram)
                try:
                    return await asyncio.wait_for(asyncio.shield(proto.done), wait_s)
                except TimeoutError:
                    continue
            raise TimeoutError
        finally:
            transport.close()

    async def _tcp(self, data: bytes) -> bytes:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        try:
            writer.write(data)
            await writer.drain()
            envelope = await reader.readexactly(ENVELOPE_BYTES)
            (length,) = _U32.unpack_from(envelope, LENGTH_OFFSET)
            if length > MAX_MESSAGE_BYTES:
                raise ClientError(f"reply announces {length} bytes, more than {MAX_MESSAGE_BYTES}")
            return envelope + await reader.readexactly(length)
        except asyncio.IncompleteReadError:
            raise ClientError("the server closed the connection mid-reply") from None
        finally:
            writer.close()

    async def resolve(
        self,
        handle: str,
        indexes: Sequence[int] = (),
        types: Sequence[str] = (),
        *,
        flags: OpFlag = DEFAULT_FLAGS,
    ) -> Message:
        body = ResolutionRequest(handle, tuple(indexes), tuple(types))
        return await self.request(self._message(OpCode.RESOLUTION, body, flags))

    async def site_info(self) -> SiteInfo:
        reply = await self.request(
            self._message(OpCode.GET_SITE_INFO, SiteInfoRequest(), DEFAULT_FLAGS)
        )
        if reply.header.response_code != ResponseCode.SUCCESS or not isinstance(
            reply.body, SiteInfoReply
        ):
            raise ClientError(f"site info request failed with RC {reply.header.response_code}")
        return reply.body.site


def _digest_matches(request: Message, reply: Message) -> bool:
    if reply.digest is None:
        return False
    if reply.digest.hash_type not in (HashType.SHA1, HashType.SHA256):
        return False  # MD5 proves nothing a forger could not make
    return reply.digest == digest_of(request, reply.digest.hash_type)


__all__ = ["ClientError", "NativeClient"]
