"""Compact JWS (RFC 7515) for Handle v9 record signatures and certificates.

Only what HS_SIGNATURE / HS_CERT need: the compact serialisation, one signature, JSON
header and payload. Algorithms (RFC 7518 §3, RFC 8037 §3.1):

- ``ES256`` ECDSA P-256 / SHA-256, signature = raw r||s (64 bytes), not DER. Our default.
- ``RS256`` RSASSA-PKCS1-v1_5 / SHA-256. The only algorithm the Handle.Net 9 reference
  writes (``JsonWebSignatureImpl``: header is exactly ``{"alg":"RS256"}``), so the one to
  use when Handle v9 clients must verify.
- ``EdDSA`` Ed25519.
- ``DS256`` verify only: the reference signs with DSA keys as ``SHA256withDSA`` (a
  non-registered alg with a DER signature); older prefix keys are often DSA.

``alg`` must match the key type (and curve): a token that says RS256 never verifies under
an EC key, ``none`` and anything unknown never verify.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from .codes import ResponseCode
from .errors import LocalProtocolError, ProtocolError
from .keys import PublicKey

Alg: TypeAlias = Literal["ES256", "RS256", "EdDSA"]
SIGNING_ALGS: tuple[Alg, ...] = ("ES256", "RS256", "EdDSA")
VERIFY_ALGS = frozenset({"ES256", "RS256", "EdDSA", "DS256"})

PrivateKey: TypeAlias = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey

MAX_TOKEN_CHARS = 1 << 20  # far above any value (64 KiB cap); bounds work on garbage input
_ES256_HALF = 32
_COMPACT = re.compile(r"([A-Za-z0-9_-]*)\.([A-Za-z0-9_-]*)\.([A-Za-z0-9_-]*)")


class SignatureError(ProtocolError):
    """Malformed JWS or certificate."""

    # Raised when a value's data is not a well-formed HS_SIGNATURE / HS_CERT token; a
    # client storing such a value gets "invalid value".
    response_code = ResponseCode.INVALID_VALUE


# --- base64url (RFC 7515 §2: no padding) -------------------------------------------------


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Strict base64url without padding; anything else is a ``SignatureError``."""
    if len(text) % 4 == 1 or not re.fullmatch(r"[A-Za-z0-9_-]*", text):
        raise SignatureError(f"not base64url: {text[:40]!r}")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise SignatureError(f"not base64url: {text[:40]!r}") from None


def canonical_json(obj: Mapping[str, Any]) -> bytes:
    """Deterministic JSON: sorted keys, no spaces, UTF-8 (RFC 8785-like for our data: strings,
    integers, lists and objects only)."""
    try:
        return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)
    except TypeError as exc:  # orjson.JSONEncodeError: lone surrogate, huge int, bad type
        raise LocalProtocolError(f"cannot serialise JWS content: {exc}") from None


# --- keys ------------------------------------------------------------------------------


def alg_for_key(key: PrivateKey | PublicKey) -> Alg:
    """The algorithm a key signs with here: P-256 -> ES256, RSA -> RS256, Ed25519 -> EdDSA."""
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        if isinstance(key.curve, ec.SECP256R1):
            return "ES256"
        raise LocalProtocolError(f"EC curve {key.curve.name} is not supported (P-256 only)")
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return "RS256"
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return "EdDSA"
    raise LocalProtocolError(f"{type(key).__name__} keys cannot sign JWS here")


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A private key with the JWS algorithm it signs with and an optional ``kid``."""

    private_key: PrivateKey
    alg: Alg
    kid: str | None = None

    def __post_init__(self) -> None:
        if alg_for_key(self.private_key) != self.alg:
            raise LocalProtocolError(
                f"alg {self.alg} does not fit a {type(self.private_key).__name__}"
            )

    @classmethod
    def from_private_key(
        cls, key: PrivateKey, alg: Alg | None = None, kid: str | None = None
    ) -> SigningKey:
        return cls(key, alg or alg_for_key(key), kid)

    @property
    def public_key(self) -> PublicKey:
        return self.private_key.public_key()

    def sign(self, data: bytes) -> bytes:
        key = self.private_key
        if isinstance(key, ec.EllipticCurvePrivateKey):
            r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
            return r.to_bytes(_ES256_HALF, "big") + s.to_bytes(_ES256_HALF, "big")
        if isinstance(key, rsa.RSAPrivateKey):
            return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        return key.sign(data)


def public_key_id(key: PublicKey) -> bytes:
    """DER SubjectPublicKeyInfo: equal for equal keys whatever object holds them."""
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


# --- JWS -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class Jws:
    header: dict[str, Any]
    payload: dict[str, Any]
    signing_input: bytes  # ASCII b64url(header) "." b64url(payload), exactly as received
    signature: bytes

    @property
    def alg(self) -> str:
        alg = self.header.get("alg")
        return alg if isinstance(alg, str) else ""


def jws_sign(
    payload: Mapping[str, Any], key: SigningKey, header_extra: Mapping[str, Any] | None = None
) -> str:
    header: dict[str, Any] = dict(header_extra or {})
    if "alg" in header:
        raise LocalProtocolError("header_extra may not set alg; it follows the key")
    header["alg"] = key.alg
    if key.kid is not None:
        header.setdefault("kid", key.kid)
    signing_input = (
        b64url_encode(canonical_json(header)) + "." + b64url_encode(canonical_json(payload))
    )
    return signing_input + "." + b64url_encode(key.sign(signing_input.encode("ascii")))


def _json_object(part: str, what: str) -> dict[str, Any]:
    try:
        obj = orjson.loads(b64url_decode(part))
    except orjson.JSONDecodeError:
        raise SignatureError(f"JWS {what} is not JSON") from None
    if not isinstance(obj, dict):
        raise SignatureError(f"JWS {what} is not a JSON object")
    return obj


def jws_parse(token: str | bytes) -> Jws:
    """Parse a compact JWS; every malformation is a ``SignatureError``."""
    if isinstance(token, bytes | bytearray | memoryview):
        try:
            token = bytes(token).decode("ascii")
        except UnicodeDecodeError:
            raise SignatureError("JWS is not ASCII") from None
    if not isinstance(token, str):
        raise SignatureError("JWS must be text")
    token = token.strip()  # the reference trims too; a value typed by hand may end in \n
    if len(token) > MAX_TOKEN_CHARS:
        raise SignatureError(f"JWS is longer than {MAX_TOKEN_CHARS} characters")
    match = _COMPACT.fullmatch(token)
    if match is None:
        raise SignatureError("not a compact JWS (three base64url parts separated by dots)")
    head, body, sig = match.groups()
    header = _json_object(head, "header")
    alg = header.get("alg")
    if not isinstance(alg, str) or not alg:
        raise SignatureError("JWS header has no alg")
    if "crit" in header:  # RFC 7515 §4.1.11: we understand no extensions, so must refuse
        raise SignatureError("JWS header lists critical extensions we do not support")
    payload = _json_object(body, "payload")
    return Jws(header, payload, f"{head}.{body}".encode("ascii"), b64url_decode(sig))


def jws_verify(jws: Jws, public_key: PublicKey) -> bool:
    """True only if ``jws.alg`` is one we accept, fits the key type, and the signature holds."""
    alg, data, sig = jws.alg, jws.signing_input, jws.signature
    try:
        if alg == "ES256" and isinstance(public_key, ec.EllipticCurvePublicKey):
            if not isinstance(public_key.curve, ec.SECP256R1) or len(sig) != 2 * _ES256_HALF:
                return False
            r = int.from_bytes(sig[:_ES256_HALF], "big")
            s = int.from_bytes(sig[_ES256_HALF:], "big")
            public_key.verify(encode_dss_signature(r, s), data, ec.ECDSA(hashes.SHA256()))
        elif alg == "RS256" and isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(sig, data, padding.PKCS1v15(), hashes.SHA256())
        elif alg == "EdDSA" and isinstance(public_key, ed25519.Ed25519PublicKey):
            public_key.verify(sig, data)
        elif alg == "DS256" and isinstance(public_key, dsa.DSAPublicKey):
            public_key.verify(sig, data, hashes.SHA256())
        else:
            return False
    except (InvalidSignature, ValueError):
        return False
    return True
