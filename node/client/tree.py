"""Asking the tree: one iterative query to a list of servers (failover, breakers, the
reply checked against the request), and the search for a prefix's servers through the
top-level node (docs/idis.md, "Prefix registration and referral").

A prefix's servers are named by ``0.NA/<prefix>``: HS_SITE values (one per site), or an
HS_SERV value naming a service handle whose HS_SITE values they are. A server without
the record answers RC 303 with the HS_SITE.PREFIX / HS_SERV.PREFIX values of the nearest
ancestor that delegates it; those sites are asked again. Every hop counts against
``max_hops``; asking the same servers for the same handle twice is a loop. Queries are
iterative (RECU clear): the servers asked never recurse on our behalf.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from node.client.native import ClientError, NativeClient
from node.client.upstream import Address, Breakers
from protocol.bodies import ReferralReply, ResolutionReply, ResolutionRequest
from protocol.codes import OpCode, OpFlag, ResponseCode
from protocol.errors import ProtocolError
from protocol.message import Envelope, Header, Message
from protocol.structured import InterfaceProtocol, SiteInfo
from protocol.values import HandleValue

NA_PREFIX = "0.NA"
GLOBAL_SERVICE = "0.NA/0.NA"  # HS_SERV naming the global (here: upstream) sites
# What a server may answer that is an answer (anything else: try the next server).
ANSWERS = frozenset(
    {
        ResponseCode.SUCCESS,
        ResponseCode.HANDLE_NOT_FOUND,
        ResponseCode.VALUES_NOT_FOUND,
        ResponseCode.PREFIX_REFERRAL,
        ResponseCode.SERVER_NOT_RESP,
    }
)
FLAGS = OpFlag.CACR | OpFlag.PUBL | OpFlag.RRDG  # no RECU: iterative


class UpstreamUnavailable(Exception):
    """No server that could answer did (down, too slow, breakers open, out of hops)."""


class ForgedReply(ClientError):
    """A reply that does not answer our request; discarded."""


@dataclass(frozen=True, slots=True)
class Answer:
    response_code: int
    values: tuple[HandleValue, ...]
    handle: str  # as the server wrote it
    server: Address


class Asker:
    """One resolution request to the first server of a list that answers it."""

    def __init__(
        self,
        breakers: Breakers,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        clock: Callable[[], float] = time.time,
        on_forged: Callable[[str], None] = lambda what: None,
        on_exchange: Callable[[str, float], None] = lambda result, seconds: None,
    ):
        self.breakers = breakers
        self.monotonic = monotonic
        self.clock = clock
        self.on_forged = on_forged
        self.on_exchange = on_exchange

    async def ask(
        self,
        servers: Sequence[Address],
        handle: str,
        types: Sequence[str],
        deadline: float,
    ) -> Answer:
        tried = 0
        problems = []
        for server in servers:
            remaining = deadline - self.monotonic()
            if remaining <= 0:
                break
            if not self.breakers.allows(server):
                problems.append(f"{server}: not asked (failing)")
                continue
            tried += 1
            started = self.monotonic()
            try:
                answer = await self._once(server, handle, types, remaining)
            except (ClientError, ProtocolError, OSError, TimeoutError) as exc:
                self.breakers.failed(server)
                self.on_exchange("error", self.monotonic() - started)
                problems.append(f"{server}: {exc}")
                continue
            self.breakers.succeeded(server)
            self.on_exchange("answered", self.monotonic() - started)
            return answer
        detail = "; ".join(problems[-3:]) or "no server to ask"
        raise UpstreamUnavailable(f"no answer for {handle} ({tried} asked): {detail}")

    async def _once(
        self, server: Address, handle: str, types: Sequence[str], timeout_s: float
    ) -> Answer:
        client = NativeClient(
            server.host, server.port, timeout_s=timeout_s, udp=server.udp, on_forged=self.on_forged
        )
        request = Message(
            Envelope(request_id=secrets.randbits(31) or 1),
            Header(OpCode.RESOLUTION, flags=FLAGS, expiration=int(self.clock()) + 60),
            ResolutionRequest(handle, (), tuple(types)),
        )
        reply = await client.request(request)  # request id and digest checked there
        rc = reply.header.response_code
        if rc not in ANSWERS:
            raise ClientError(f"answered RC {int(rc)}")
        if isinstance(reply.body, ResolutionReply | ReferralReply):
            if (
                isinstance(reply.body, ResolutionReply)
                and reply.body.handle.upper() != handle.upper()
            ):
                self.on_forged("handle")
                raise ForgedReply(f"answered for {reply.body.handle!r}, not {handle!r}")
            values = tuple(reply.body.values or ())
            named = reply.body.handle or handle
        else:
            values, named = (), handle
        return Answer(int(rc), values, named, server)


def site_addresses(site: SiteInfo, handle: str) -> list[Address]:
    """The servers of ``site`` to ask about ``handle``: the one its hash rule picks first,
    then the others (failover). UDP where the server offers it, else TCP only."""
    if not site.servers:
        return []
    first = site.server_for(handle)
    ordered = [first] + [s for s in site.servers if s is not first]
    out = []
    for server in ordered:
        udp = server.find_interface(InterfaceProtocol.UDP)
        tcp = server.find_interface(InterfaceProtocol.TCP)
        if udp is not None and (tcp is None or tcp.port == udp.port):
            out.append(Address(str(server.ip), udp.port, udp=True))
        elif tcp is not None:
            out.append(Address(str(server.ip), tcp.port, udp=False))
    return out


def sites_of(values: Sequence[HandleValue]) -> list[SiteInfo]:
    """The sites a prefix record names, primaries first, broken ones skipped: its
    HS_SITE values, or else (a referral) its HS_SITE.PREFIX ones."""
    kinds = {v.type.upper() for v in values}
    wanted = "HS_SITE" if "HS_SITE" in kinds else "HS_SITE.PREFIX"
    sites = []
    for v in values:
        if v.type.upper() != wanted:
            continue
        try:
            sites.append(SiteInfo.from_wire(v.data))
        except ProtocolError:
            continue
    return sorted(sites, key=lambda s: not s.primary)


def addresses_of(sites: Sequence[SiteInfo], handle: str) -> list[Address]:
    out: list[Address] = []
    for site in sites:
        out += [a for a in site_addresses(site, handle) if a not in out]
    return out


class PrefixLocator:
    """Finds the values naming a prefix's servers, through the top-level node."""

    def __init__(self, asker: Asker, roots: Callable[[], Sequence[Address]], max_hops: int):
        self.asker = asker
        self.roots = roots
        self.max_hops = max_hops

    async def locate(self, prefix: str, deadline: float) -> tuple[HandleValue, ...] | None:
        """The record naming the servers answering for ``prefix`` (its own 0.NA record,
        whole: certificates too; or a service handle's); None when the tree says it does
        not exist."""
        target = f"{NA_PREFIX}/{prefix}"
        servers: Sequence[Address] = self.roots()
        seen: set[tuple[tuple[Address, ...], str]] = set()
        for _ in range(self.max_hops):
            key = (tuple(servers), target.upper())
            if key in seen:
                raise UpstreamUnavailable(f"referral loop looking for {target}")
            seen.add(key)
            answer = await self.asker.ask(servers, target, (), deadline)
            rc = answer.response_code
            if rc in (ResponseCode.HANDLE_NOT_FOUND, ResponseCode.VALUES_NOT_FOUND):
                return None
            if rc == ResponseCode.SERVER_NOT_RESP:
                raise UpstreamUnavailable(f"{answer.server} does not answer for {target}")
            sites = sites_of(answer.values)
            if sites:
                if rc == ResponseCode.SUCCESS:
                    return answer.values
                # RC 303: the sites that hold the derived prefix's record: ask them.
                servers = addresses_of(sites, target)
                continue
            service = _service(answer.values)
            if service is None:
                return None  # a record naming no servers: nothing to forward to
            if service.upper() == GLOBAL_SERVICE:
                servers = self.roots()
            else:
                target = service  # the service handle's own HS_SITE values name the servers
                servers = self.roots()
        raise UpstreamUnavailable(
            f"more than {self.max_hops} hops looking for {NA_PREFIX}/{prefix}"
        )


def _service(values: Sequence[HandleValue]) -> str | None:
    for v in values:
        if v.type.upper() in ("HS_SERV", "HS_SERV.PREFIX"):
            try:
                return v.data.decode("utf-8").strip() or None
            except UnicodeDecodeError:
                return None
    return None


class TreeResolver:
    """Resolution as a Handle client with a root does it: the prefix's servers from the
    root (following referrals and service handles), then the handle from them."""

    def __init__(
        self,
        roots: Sequence[Address],
        *,
        timeout_s: float = 5.0,
        max_hops: int = 8,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self.roots = tuple(roots)
        self.timeout_s = timeout_s
        self.monotonic = monotonic
        self.asker = Asker(Breakers(3, 30.0, monotonic), monotonic=monotonic)
        self.locator = PrefixLocator(self.asker, lambda: self.roots, max_hops)

    async def resolve(self, handle: str, types: Sequence[str] = ()) -> Answer:
        """The answer of the server holding ``handle`` (RC 100 when its prefix is unknown)."""
        deadline = self.monotonic() + self.timeout_s
        prefix, slash, _ = handle.partition("/")
        if prefix.upper() == NA_PREFIX or not slash:
            return await self.asker.ask(self.roots, handle, types, deadline)
        sites = await self.locator.locate(prefix, deadline)
        if sites is None:
            return Answer(ResponseCode.HANDLE_NOT_FOUND, (), handle, self.roots[0])
        return await self.asker.ask(addresses_of(sites_of(sites), handle), handle, types, deadline)
