"""UDP segmentation offload for replies of several datagrams (Linux ``UDP_SEGMENT``).

A reply longer than one datagram goes out as 512-byte datagrams (protocol.fragment),
every one but the last exactly 512 bytes. With ``UDP_SEGMENT`` set to 512 on the
socket, the kernel cuts anything longer sent in one call into 512-byte datagrams: the
fragments of a reply, sent back to back in one ``sendto``, leave as exactly the
datagrams separate calls would send, for one system call instead of one per datagram.
A datagram of 512 bytes or less is sent as it is.

Not every path can take it: a kernel may refuse a segmented send (EIO: no checksum
offload on the route's device, IPsec). The front then turns it off for good and sends
datagram by datagram, as without it; the one reply lost is retried by its client.
"""

from __future__ import annotations

import asyncio
import socket
import sys

UDP_SEGMENT = getattr(socket, "UDP_SEGMENT", 103)  # linux/udp.h
MAX_SEGMENTS = 64  # UDP_MAX_SEGMENTS: datagrams one call may carry


def segment_at(transport: asyncio.BaseTransport, size: int) -> bool:
    """Have the kernel cut what ``transport`` sends into ``size``-byte datagrams (0:
    stop); False where it cannot (not Linux, a kernel before 4.18, no socket)."""
    if not sys.platform.startswith("linux"):
        return False
    sock = transport.get_extra_info("socket")
    if sock is None or sock.type != socket.SOCK_DGRAM:
        return False
    try:
        sock.setsockopt(socket.SOL_UDP, UDP_SEGMENT, size)
    except OSError:
        return False
    return True
