"""Who a native request came from: the transport, the address, and for TCP the state of
the connection (the IDIS SDKs log in once per connection and send everything after on
it; docs/authentication.md, "IDIS SDK dialect")."""

from __future__ import annotations

from dataclasses import dataclass, field

from node.auth import Identity


@dataclass(eq=False)
class Connection:
    """One TCP connection's login (opcode 2000 / 2001), while it lasts."""

    login: Identity | None = None
    expires: float = 0.0  # monotonic seconds
    logged_in_once: bool = False

    def identity(self, now: float) -> Identity | None:
        return self.login if self.login is not None and now < self.expires else None

    def log_in(self, identity: Identity, now: float, lifetime_s: float) -> None:
        self.login, self.expires, self.logged_in_once = identity, now + lifetime_s, True


@dataclass(frozen=True, slots=True)
class Peer:
    transport: str  # "udp" | "tcp"
    address: tuple[str, int] | None = None
    conn: Connection | None = field(default=None, compare=False)
    # The most a reply may take in datagrams (udp_max_reply_bytes); None over TCP.
    max_reply_bytes: int | None = None


def sockaddr(addr: tuple[str, int] | tuple[str, int, int, int]) -> tuple[str, int]:
    """The (host, port) of a socket address (IPv6 ones carry flow info and scope too)."""
    return (addr[0], addr[1])
