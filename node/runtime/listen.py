"""Listening TCP sockets made here rather than by asyncio: ``bind = ::`` means every
address, IPv4 included (IPV6_V6ONLY off), as it does for the native UDP socket.
asyncio's own ``create_server`` sets IPV6_V6ONLY, which would make the HTTP API and
native TCP IPv6-only while native UDP answered both."""

from __future__ import annotations

import socket

BACKLOG = 1024


def tcp_listener(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if host == "::" else 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
