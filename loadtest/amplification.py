"""UDP amplification: how many bytes one native request from a spoofable source draws
back, per request kind. A reflection attacker sends the request with the victim's address
as its source; every byte the node sends back lands on the victim.

Each request is sent on its own from ``source`` (one at a time, so no per-source rate
limit is reached) and every datagram that comes back until the node falls quiet is
counted: the factor is reply bytes over request bytes, UDP payloads both (docs/protocol.md:
a reply larger than 512 bytes is several datagrams, each repeating the 20-byte envelope).
The node promises at most ``udp_max_reply_bytes`` per request (node/settings.py), so
``bound`` is that plus one envelope, over the request's size.
"""

from __future__ import annotations

import secrets
import socket
import time
from dataclasses import dataclass

from loadtest.attacks import ATTACKER, DEFAULT_FLAGS, resolution, with_request_id
from protocol.bodies import SiteInfoRequest
from protocol.codes import OpCode, OpFlag
from protocol.message import ENVELOPE_BYTES, Envelope, Header, Message, encode, encode_header


@dataclass(frozen=True)
class Amplified:
    kind: str
    request_bytes: int
    reply_bytes: int  # the most one request drew back
    datagrams: int  # in that reply

    @property
    def factor(self) -> float:
        return self.reply_bytes / self.request_bytes


def bound(max_reply_bytes: int, request_bytes: int) -> float:
    """The largest factor a node capping UDP replies at ``max_reply_bytes`` may show."""
    return (max_reply_bytes + ENVELOPE_BYTES) / request_bytes


def site_info_request() -> bytes:
    header = Header(OpCode.GET_SITE_INFO, flags=DEFAULT_FLAGS, expiration=int(time.time()) + 43_200)
    return encode(Message(Envelope(request_id=1), header, SiteInfoRequest()))


def malformed_request() -> bytes:
    """A resolution whose header announces a 64-byte body and carries 8 bytes (RC 4)."""
    payload = encode_header(Header(OpCode.RESOLUTION, flags=DEFAULT_FLAGS), 64) + bytes(8)
    return Envelope(request_id=1, length=len(payload)).to_wire() + payload


def request_kinds(demo_roll: str, largest: str, missing: str) -> dict[str, bytes]:
    """The requests measured, by kind: ``largest`` is the biggest record an enterprise
    admin can write, ``missing`` a handle under a served prefix that does not exist."""
    cert = DEFAULT_FLAGS | OpFlag.CERT
    return {
        "resolution, demo roll": resolution(demo_roll),
        "resolution, largest record": resolution(largest),
        "resolution, not found": resolution(missing),
        "resolution+CERT, demo roll": resolution(demo_roll, cert),
        "resolution+CERT, largest record": resolution(largest, cert),
        "GET_SITE_INFO": site_info_request(),
        "malformed request": malformed_request(),
    }


def measure(
    host: str,
    port: int,
    kind: str,
    request: bytes,
    *,
    source: str = ATTACKER,
    samples: int = 3,
    quiet_s: float = 0.3,
    timeout_s: float = 3.0,
) -> Amplified:
    """Send ``request`` ``samples`` times (a new request id each), one at a time; the
    largest reply any drew."""
    most, most_datagrams = 0, 0
    for _ in range(samples):
        data = with_request_id(request, secrets.randbits(31) or 1)
        got, datagrams = 0, 0
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            _large_receive_buffer(sock)
            sock.bind((source, 0))
            sock.connect((host, port))
            sock.send(data)
            end = time.monotonic() + timeout_s
            while (left := end - time.monotonic()) > 0:
                # The first datagram may take a while (a signature); then quiet means done.
                sock.settimeout(min(quiet_s, left) if datagrams else left)
                try:
                    got += len(sock.recv(65536))
                except (TimeoutError, ConnectionRefusedError):
                    break  # quiet: the reply is complete (or there is none)
                datagrams += 1
        if got > most:
            most, most_datagrams = got, datagrams
    return Amplified(kind, len(request), most, most_datagrams)


def _large_receive_buffer(sock: socket.socket, size: int = 8 << 20) -> None:
    """Room for a 256 KiB reply arriving at once, so none of it is lost and uncounted
    (SO_RCVBUF is capped by net.core.rmem_max; root may force past it)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), size)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
