"""``Authorization: Handle ...``: the Handle.Net REST API's own credentials header.

Forms a client sends (reference ``HandleAuthorizationHeader``, Handle.Net 9)::

    Handle version="0", sessionId="..."                           use an authenticated session
    Handle sessionId="...", id="300:88.118%2FADMIN", type="HS_PUBKEY",
           cnonce="<base64>", alg="SHA256", signature="<base64>"  answer the session's challenge
    Handle clientCert="true"                                      use the TLS client certificate

Parameters are ``name=token`` or ``name="quoted string"`` (backslash escapes), separated
by commas; names are case-insensitive and unknown ones are ignored, as the reference
does. Only ``id`` is percent-decoded ('+' stays '+'), again as the reference.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from node.auth.basic import parse_user
from node.auth.identity import MalformedCredentials

_TOKEN = r"[-A-Za-z0-9!#$%&'*+.`^_|~]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"'
_PARAM = re.compile(rf"\s*({_TOKEN})\s*=\s*({_TOKEN}|{_QUOTED})\s*(,\s*)*", re.DOTALL)
_UNESCAPE = re.compile(r"\\(.)", re.DOTALL)
# Hard bounds on what a client may make us decode; a real nonce or RSA-4096 signature is
# far below them.
MAX_CNONCE_BYTES = 1024
MAX_SIGNATURE_BYTES = 2048


def is_handle_header(header: str | None) -> bool:
    return header is not None and header.lstrip()[:7].lower() == "handle "


@dataclass(frozen=True, slots=True)
class HandleAuthorization:
    params: dict[str, str]  # names lower-cased

    def get(self, name: str) -> str | None:
        return self.params.get(name.lower())

    @property
    def version(self) -> str | None:
        return self.get("version")

    @property
    def session_id(self) -> str | None:
        return self.get("sessionId")

    @property
    def client_cert(self) -> bool:
        # Java Boolean.parseBoolean: "true" in any case, anything else is false.
        return (self.get("clientCert") or "").lower() == "true"

    @property
    def authenticating(self) -> bool:
        """The reference's ``isAuthenticating``: any field of a challenge answer."""
        return any(self.get(n) is not None for n in ("id", "type", "alg", "signature"))

    def missing_answer_fields(self) -> list[str]:
        return [n for n in ("id", "type", "cnonce", "alg", "signature") if not self.get(n)]


def parse_handle_authorization(header: str) -> HandleAuthorization:
    """Parse an ``Authorization: Handle`` value; MalformedCredentials when it is not one."""
    text = header.strip()
    if text[:7].lower() != "handle " or not text[7:].strip():
        raise MalformedCredentials("Authorization: Handle carries no parameters")
    rest = text[7:]
    params: dict[str, str] = {}
    pos, expect_more = 0, True
    while pos < len(rest):
        m = _PARAM.match(rest, pos)
        if m is None or not expect_more:
            raise MalformedCredentials(
                "Authorization: Handle is not a list of name=value parameters"
            )
        name, raw, sep = m.group(1).lower(), m.group(2), m.group(3)
        value = _UNESCAPE.sub(r"\1", raw[1:-1]) if raw.startswith('"') else raw
        if name == "id":
            try:
                value = unquote_to_bytes(value).decode("utf-8")
            except UnicodeDecodeError:
                raise MalformedCredentials(
                    "Authorization: Handle id is not UTF-8 once percent-decoded"
                ) from None
        params[name] = value
        expect_more = sep is not None
        pos = m.end()
    return HandleAuthorization(params)


def session_id_of(header: str | None) -> str | None:
    """The ``sessionId`` an Authorization value names, None when it names none (or is
    not a valid Handle header: the auth chain reports that)."""
    if not is_handle_header(header):
        return None
    assert header is not None
    try:
        return parse_handle_authorization(header).session_id or None
    except MalformedCredentials:
        return None


def parse_admin_id(text: str) -> tuple[int, str]:
    """``300:88.118/ADMIN`` -> (300, "88.118/ADMIN"); without a numeric index, index 0."""
    index, handle = parse_user(text.strip())
    if not handle:
        raise MalformedCredentials(
            "Authorization: Handle id names no admin handle (expected index:handle)"
        )
    return index, handle


def decode_b64(text: str, what: str, limit: int) -> bytes:
    """Base64 as commons-codec ``decodeBase64`` reads it: standard or URL-safe alphabet,
    padding optional."""
    cleaned = "".join(text.split()).rstrip("=").replace("-", "+").replace("_", "/")
    if len(cleaned) > (limit * 4) // 3 + 4:
        raise MalformedCredentials(f"Authorization: Handle {what} is too long")
    try:
        data = base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise MalformedCredentials(f"Authorization: Handle {what} is not base64") from None
    if not data:
        raise MalformedCredentials(f"Authorization: Handle {what} is empty")
    return data
