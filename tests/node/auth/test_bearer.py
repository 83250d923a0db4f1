"""Bearer tokens (node/auth/bearer.py) on a passed-in clock: issued, accepted until
they expire, refused when altered or sealed by another node's key."""

from __future__ import annotations

import os

import pytest

from node.auth.bearer import BearerScheme
from node.auth.identity import AuthContext, CredentialsRejected, Identity
from node.secrets.vault import SecretVault


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def ctx(header: str) -> AuthContext:
    return AuthContext(headers={"Authorization": header}, peer="127.0.0.1", secure=True, extra={})


async def test_tokens_live_their_lifetime() -> None:
    clock = Clock()
    scheme = BearerScheme(SecretVault(os.urandom(32)), clock)
    who = Identity("88.118.2/ADMIN", 300, "basic")
    token = scheme.issue(who, 86_400)
    assert scheme.claims(ctx(f"Bearer {token}")) and not scheme.claims(ctx("Basic x"))
    got = await scheme.authenticate(ctx(f"Bearer {token}"))
    assert (got.handle, got.index, got.scheme) == ("88.118.2/ADMIN", 300, "bearer")
    clock.now += 86_399
    assert (await scheme.authenticate(ctx(f"Bearer {token}"))).index == 300
    clock.now += 1
    with pytest.raises(CredentialsRejected, match="expired"):
        await scheme.authenticate(ctx(f"Bearer {token}"))


async def test_forged_tokens_are_refused() -> None:
    clock = Clock()
    vault = SecretVault(os.urandom(32))
    scheme = BearerScheme(vault, clock)
    token = scheme.issue(Identity("88.118.2/ADMIN", 300, "basic"), 60)
    other = BearerScheme(SecretVault(os.urandom(32)), clock)
    flipped = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
    # An HS_SECKEY sealed by the same vault is not a token (bound to another use).
    secret_box = vault.seal(b'{"h": "88.118/ADMIN", "i": 300, "exp": 9999999999}')
    import base64

    sealed_secret = base64.urlsafe_b64encode(secret_box[2:]).decode().rstrip("=")
    for bad in (flipped, "not-base64!!", sealed_secret, token + "AAAA"):
        with pytest.raises(CredentialsRejected, match="not one this node issued"):
            await scheme.authenticate(ctx(f"Bearer {bad}"))
    with pytest.raises(CredentialsRejected):
        await other.authenticate(ctx(f"Bearer {token}"))
