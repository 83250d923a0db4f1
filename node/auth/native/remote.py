"""Asking an identity's home server whether a challenge answer proves it: opcode 201
VERIFY_CHALLENGE, certified (docs/authentication.md, "Verification").

An identity this node does not hold lives on the server its prefix record names: the
identity's ``0.NA/<prefix>`` record (HS_SITE), or the HS_SITE.PREFIX values of the
nearest ancestor that delegates it, found as a resolution here finds them (through the
tree when this node forwards). The server the site's hash rule picks for the identity
is asked over TCP (an answer and its digest do not always fit a datagram); its reply
counts only when signed by that server's HS_SITE key and it answers our request. A
site that cannot be reached makes the answer unproven, never valid.

Each check is one outgoing exchange with a deadline, and at most ``max_concurrent``
run at once: a stream of answers naming foreign identities costs us no more.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa

from node.client.native import ClientError, NativeClient
from node.client.tree import sites_of
from node.resolution.outcomes import Found, PrefixReferral
from node.resolution.resolver import Resolver
from protocol.authbodies import VerifyChallengeReply, VerifyChallengeRequest
from protocol.codes import OpCode, OpFlag, ResponseCode
from protocol.errors import HandleSyntaxError, ProtocolError
from protocol.handle import parse_handle
from protocol.keys import decode_public_key
from protocol.message import Envelope, Header, Message
from protocol.structured import InterfaceProtocol, ServerInfo, SiteInfo

log = logging.getLogger("idnode.auth")

NA_PREFIX = "0.NA"
MAX_SITES_TRIED = 4


class HomeServerCheck:
    """The ``AnswerChecker.remote`` hook: True / False as the home server says; None
    when no home server is known or none could be asked."""

    def __init__(
        self,
        resolver: Resolver,
        *,
        timeout_s: float,
        max_concurrent: int = 8,
        clock: Callable[[], float] = time.time,
    ):
        self.resolver = resolver
        self.timeout_s = timeout_s
        self.clock = clock
        self._slots = asyncio.Semaphore(max_concurrent)

    async def __call__(
        self, handle: str, index: int, nonce: bytes, digest: bytes, response: bytes
    ) -> bool | None:
        sites = await self.home_sites(handle)
        body = VerifyChallengeRequest(handle, index, nonce, digest, response)
        async with self._slots:
            for site in sites[:MAX_SITES_TRIED]:
                server = site.server_for(handle)
                try:
                    return await self._ask(server, body)
                except (ClientError, ProtocolError) as exc:
                    log.warning("cannot verify %s:%s with its home server: %s", index, handle, exc)
        return None

    async def held_here(self, handle: str) -> bool:
        """Would this node hold the identity ``handle``: its prefix served here and not
        delegated to another site by an ancestor's HS_SITE.PREFIX? Then an identity the
        registry lacks does not exist, and is answered here like a wrong answer."""
        try:
            prefix = parse_handle(handle).owning_prefix
        except HandleSyntaxError:
            return True  # names no identity anywhere
        if not self.resolver.served.serves(prefix):
            return False
        found = await self.resolver.resolve(f"{NA_PREFIX}/{prefix}", (), (), self.clock())
        return not isinstance(found, PrefixReferral)

    async def home_sites(self, handle: str) -> list[SiteInfo]:
        """The sites serving ``handle``'s prefix, primaries first."""
        try:
            prefix = parse_handle(handle).owning_prefix
        except HandleSyntaxError:
            return []
        # Through the tree when this node forwards (node.resolution.forward); else from
        # the prefix records it holds.
        found = await self.resolver.resolve(
            f"{NA_PREFIX}/{prefix}", (), (), self.clock(), forward=True
        )
        if isinstance(found, Found | PrefixReferral):
            return sites_of(found.values)
        return []

    async def _ask(self, server: ServerInfo, body: VerifyChallengeRequest) -> bool:
        interface = server.find_interface(InterfaceProtocol.TCP)
        if interface is None:
            raise ClientError(f"server {server.server_id} has no native TCP interface")
        if not server.public_key:
            raise ClientError(f"server {server.server_id} publishes no key to check its reply")
        key = decode_public_key(server.public_key)
        if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey | dsa.DSAPublicKey):
            raise ClientError(f"server {server.server_id}'s key cannot sign Handle messages")
        client = NativeClient(
            str(server.ip), interface.port, timeout_s=self.timeout_s, udp=False, verify_key=key
        )
        request = Message(
            Envelope(request_id=secrets.randbits(31) or 1),
            Header(OpCode.VERIFY_RESPONSE, flags=OpFlag.CERT, expiration=int(self.clock()) + 60),
            body,
        )
        reply = await client.request(request)
        if reply.request_id != request.request_id:
            raise ClientError("the home server's reply answers another request")
        if reply.header.response_code != ResponseCode.SUCCESS:
            raise ClientError(f"the home server answered RC {int(reply.header.response_code)}")
        if not isinstance(reply.body, VerifyChallengeReply):
            raise ClientError("the home server's reply is not a verification")
        return reply.body.valid
