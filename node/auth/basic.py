"""HTTP Basic with an ``index:handle`` user and the HS_SECKEY secret as password.

As the reference (``StandardHandleAuthenticator.authenticateViaBasic``): the decoded
credentials split at the first ':'; the user part is percent-decoded ('+' stays '+'),
the password is used as raw bytes, never percent-decoded. A user ``300:88.118.2/ADMIN``
is index 300 of that handle; a user without a numeric index is index 0 ("any").

One convenience the reference lacks: ``curl -u 300:88.118.2/ADMIN:secret`` sends the
user unencoded, so the first ':' splits after "300". An all-digit user is never valid,
so then the next ':' ends the handle (a handle holding ':' must be percent-encoded).
"""

from __future__ import annotations

import base64
import binascii
from urllib.parse import unquote_to_bytes

from node.auth.identity import AuthContext, Identity, MalformedCredentials
from node.auth.verifier import SecretKeyVerifier

MAX_INDEX = 0xFFFFFFFF


def parse_user(user: str) -> tuple[int, str]:
    index_text, colon, handle = user.partition(":")
    if colon and index_text.isascii() and index_text.isdigit():
        index = int(index_text)
        if index > MAX_INDEX:
            raise MalformedCredentials(f"admin index {index} is out of range")
        return index, handle
    return 0, user


def parse_basic(header: str) -> tuple[int, str, bytes]:
    """(index, admin handle, secret bytes) from an ``Authorization: Basic`` value."""
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        raise MalformedCredentials("not Basic credentials")
    try:
        raw = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise MalformedCredentials("Basic credentials are not valid base64") from None
    user_raw, colon, secret = raw.partition(b":")
    if not colon:
        raise MalformedCredentials("Basic credentials have no ':' between user and password")
    try:
        user = unquote_to_bytes(user_raw.decode("ascii", "strict")).decode("utf-8")
    except UnicodeError:
        try:
            user = user_raw.decode("utf-8")  # sent unencoded: take the UTF-8 as it is
        except UnicodeDecodeError:
            raise MalformedCredentials("Basic user is not UTF-8") from None
    if user.isascii() and user.isdigit():
        handle_raw, colon2, rest = secret.partition(b":")
        if colon2:
            try:
                handle = handle_raw.decode("utf-8")
            except UnicodeDecodeError:
                raise MalformedCredentials("Basic user is not UTF-8") from None
            user, secret = f"{user}:{handle}", rest
    index, handle = parse_user(user)
    if not handle:
        raise MalformedCredentials("Basic user names no admin handle (expected index:handle)")
    if not secret:
        raise MalformedCredentials("Basic password is empty")
    return index, handle, secret


class BasicScheme:
    name = "basic"
    sends_secret = True  # the password crosses the wire: subject to the transport policy

    def __init__(self, verifier: SecretKeyVerifier):
        self.verifier = verifier

    def claims(self, ctx: AuthContext) -> bool:
        header = ctx.authorization
        return header is not None and header.lstrip()[:6].lower() == "basic "

    async def authenticate(self, ctx: AuthContext) -> Identity:
        assert ctx.authorization is not None
        index, handle, secret = parse_basic(ctx.authorization)
        return await self.verifier.verify(handle, index, secret, client=ctx.client)
