"""``Authorization: Bearer <token>``: the tokens ``POST /identity/token`` issues to MES
systems integrated with CAICT-style secondary nodes (docs/idis.md).

A token is the identity and its expiry, sealed with this node's secrets key for this
use alone (``SecretVault.seal_for``): every worker and every node sharing the key
directory accepts it, nothing is stored, and it cannot be forged or read. It is a
reusable credential, so it is subject to the plain-HTTP policy like a Basic password.
Tokens live ``compat_token_lifetime_s`` (24 h by default) and are not revoked early;
changing the admin's secret does not end the tokens issued before.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable

from node.auth.identity import AuthContext, CredentialsRejected, Identity, MalformedCredentials
from node.secrets.vault import SealedElsewhere, SecretVault

PURPOSE = b"idnode bearer token v1"
MAX_TOKEN_CHARS = 1024


class BearerScheme:
    name = "bearer"
    sends_secret = True

    def __init__(self, vault: SecretVault, clock: Callable[[], float]):
        self.vault = vault
        self.clock = clock

    def issue(self, identity: Identity, lifetime_s: int) -> str:
        claims = {"h": identity.handle, "i": identity.index, "exp": int(self.clock()) + lifetime_s}
        sealed = self.vault.seal_for(PURPOSE, json.dumps(claims).encode("utf-8"))
        return base64.urlsafe_b64encode(sealed).decode("ascii").rstrip("=")

    def claims(self, ctx: AuthContext) -> bool:
        header = ctx.authorization
        return header is not None and header.lstrip()[:7].lower() == "bearer "

    async def authenticate(self, ctx: AuthContext) -> Identity:
        assert ctx.authorization is not None
        token = ctx.authorization.strip()[7:].strip()
        if not token or len(token) > MAX_TOKEN_CHARS:
            raise MalformedCredentials("the bearer token is empty or too long")
        try:
            sealed = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            claims = json.loads(self.vault.open_for(PURPOSE, sealed))
            handle, index, expiry = str(claims["h"]), int(claims["i"]), int(claims["exp"])
        except (binascii.Error, ValueError, KeyError, TypeError, SealedElsewhere):
            raise CredentialsRejected(
                "the bearer token is not one this node issued", "bad_token"
            ) from None
        if expiry <= self.clock():
            raise CredentialsRejected(
                "the bearer token has expired: get a new one from /identity/token", "expired"
            )
        return Identity(handle, index, self.name)
