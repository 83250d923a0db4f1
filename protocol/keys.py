"""Handle's public-key byte format and the JWK form the REST API uses for it.

Handle key format (reference ``Util.getBytesFromPublicKey`` / ``getPublicKeyFromBytes``)::

    key type (UTF-8 string: "RSA_PUB_KEY" | "DSA_PUB_KEY" | "DH_PUB_KEY"), u16 flags (0,
    reserved), then length-prefixed big integers in Java ``BigInteger.toByteArray`` form
    (minimal two's complement, so a leading 0x00 when the top bit is set):
      RSA_PUB_KEY: exponent, modulus, then 4 zero bytes
      DSA_PUB_KEY: q, p, g, y
      DH_PUB_KEY:  y, p, g

The 4 zero bytes after an RSA key are a reference quirk: it sizes the buffer for four
length prefixes and writes three. Readers ignore anything after the last field; we write
the quirk so our keys are byte-identical to the reference's (golden GET_SITE_INFO #13).

Handle defines no binary form for EC or Ed25519 keys, so ``encode_public_key`` refuses
them; they exist here only as JWKs (record signatures, HS_CERT). DH keys are recognised
but not supported (only session key exchange uses them).

JWK: RSA / EC / OKP per RFC 7517-7518 / RFC 8037; DSA as Handle.Net writes it
(``{"kty":"DSA","y","p","q","g"}``, not a registered JWK type).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any, TypeAlias

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa

from .errors import RemoteProtocolError, ValueFormatError
from .wirebase import Reader, Writer

PublicKey: TypeAlias = (
    rsa.RSAPublicKey | dsa.DSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
)

RSA_PUB_KEY = b"RSA_PUB_KEY"
DSA_PUB_KEY = b"DSA_PUB_KEY"
DH_PUB_KEY = b"DH_PUB_KEY"

_CURVES: dict[str, ec.EllipticCurve] = {
    "P-256": ec.SECP256R1(),
    "P-384": ec.SECP384R1(),
    "P-521": ec.SECP521R1(),
}
_CURVE_NAMES = {type(curve): name for name, curve in _CURVES.items()}
_CONSTRUCT_ERRORS = (ValueError, TypeError, OverflowError, UnsupportedAlgorithm)


def _java_bytes(n: int) -> bytes:
    """``BigInteger.toByteArray`` of a non-negative n: minimal, with a sign byte if needed."""
    return n.to_bytes(n.bit_length() // 8 + 1, "big")


def _unsigned_bytes(n: int, length: int | None = None) -> bytes:
    return n.to_bytes(length if length is not None else max(1, (n.bit_length() + 7) // 8), "big")


def encode_public_key(key: PublicKey) -> bytes:
    """The Handle key-format bytes of an RSA or DSA public key."""
    w = Writer()
    if isinstance(key, rsa.RSAPublicKey):
        nums = key.public_numbers()
        w.blob(RSA_PUB_KEY)
        w.u16(0)
        w.blob(_java_bytes(nums.e))
        w.blob(_java_bytes(nums.n))
        w.u32(0)  # reference quirk: the fourth length slot it allocates but never fills
    elif isinstance(key, dsa.DSAPublicKey):
        dnums = key.public_numbers()
        params = dnums.parameter_numbers
        w.blob(DSA_PUB_KEY)
        w.u16(0)
        for part in (params.q, params.p, params.g, dnums.y):
            w.blob(_java_bytes(part))
    else:
        raise ValueFormatError(
            f"the Handle key format has no encoding for {type(key).__name__} keys (RSA and DSA only)"
        )
    return w.getvalue()


def decode_public_key(data: bytes | memoryview) -> PublicKey:
    """Parse Handle key-format bytes; trailing bytes are ignored as the reference does."""
    r = Reader(data)
    try:
        kind = r.blob("key type")
        r.u16("key flags")  # reserved; the reference ignores it
        if kind == RSA_PUB_KEY:
            e, n = (int.from_bytes(r.blob(what), "big") for what in ("RSA exponent", "RSA modulus"))
            try:
                return rsa.RSAPublicNumbers(e, n).public_key()
            except _CONSTRUCT_ERRORS as exc:
                raise ValueFormatError(f"invalid RSA public key: {exc}") from None
        if kind == DSA_PUB_KEY:
            q, p, g, y = (int.from_bytes(r.blob(f"DSA {what}"), "big") for what in "qpgy")
            try:
                return dsa.DSAPublicNumbers(y, dsa.DSAParameterNumbers(p, q, g)).public_key()
            except _CONSTRUCT_ERRORS as exc:
                raise ValueFormatError(f"invalid DSA public key: {exc}") from None
    except RemoteProtocolError as exc:
        raise ValueFormatError(f"malformed public key: {exc.message}") from None
    if kind == DH_PUB_KEY:
        raise ValueFormatError("DH_PUB_KEY public keys are not supported")
    shown = kind[:40].decode("utf-8", "replace")
    raise ValueFormatError(f"unknown public key type {shown!r}")


# --- what a verification may cost ----------------------------------------------------
#
# An HS_PUBKEY value is data a tenant writes, and every verification with it is work the
# node does for whoever asks (an anonymous challenge answer tries the identity's keys).
# Bounds that keep one verification around a millisecond: RSA with a small public
# exponent (3..65537, what every key generator uses; OpenSSL itself refuses exponents
# over 64 bits only above 3,072-bit moduli, and a 3,070-bit exponent on a 3,072-bit key
# costs a private-key operation, ~25 ms) and a modulus of 1,024..8,192 bits (16,384 bits
# costs ~8 ms); DSA with FIPS 186 sizes; ECDSA on P-256, P-384, P-521; Ed25519.

RSA_MIN_BITS = 1024
RSA_MAX_BITS = 8192
RSA_MAX_EXPONENT = 65537
DSA_P_BITS = (1024, 3072)
DSA_Q_BITS = frozenset({160, 224, 256})


def costly_key(key: PublicKey) -> str | None:
    """Why verifying with ``key`` would cost more than this node accepts (a phrase naming
    the rule), or None when it is within the bounds."""
    if isinstance(key, rsa.RSAPublicKey):
        nums = key.public_numbers()
        if not RSA_MIN_BITS <= key.key_size <= RSA_MAX_BITS:
            return (
                f"RSA modulus of {key.key_size} bits is outside {RSA_MIN_BITS}..{RSA_MAX_BITS} bits"
            )
        if nums.e > RSA_MAX_EXPONENT or nums.e < 3 or nums.e % 2 == 0:
            shown = nums.e if nums.e.bit_length() <= 32 else f"of {nums.e.bit_length()} bits"
            return f"RSA public exponent {shown} is not an odd number from 3 to {RSA_MAX_EXPONENT}"
        return None
    if isinstance(key, dsa.DSAPublicKey):
        params = key.parameters().parameter_numbers()
        p_bits, q_bits = params.p.bit_length(), params.q.bit_length()
        if not DSA_P_BITS[0] <= p_bits <= DSA_P_BITS[1] or q_bits not in DSA_Q_BITS:
            return (
                f"DSA parameters of {p_bits}/{q_bits} bits are not p of "
                f"{DSA_P_BITS[0]}..{DSA_P_BITS[1]} bits with q of 160, 224 or 256 bits"
            )
        return None
    if isinstance(key, ec.EllipticCurvePublicKey):
        if type(key.curve) not in _CURVE_NAMES:
            return f"EC curve {key.curve.name} is not one of {', '.join(_CURVES)}"
        return None
    if isinstance(key, ed25519.Ed25519PublicKey):
        return None
    return f"{type(key).__name__} keys are not supported"


# --- JWK ------------------------------------------------------------------------------


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64u_int(jwk: Mapping[str, Any], name: str) -> int:
    return int.from_bytes(_b64u_bytes(jwk, name), "big")


def _b64u_bytes(jwk: Mapping[str, Any], name: str) -> bytes:
    """Base64url member of a JWK; like the reference we also take the standard alphabet
    and padding."""
    text = jwk.get(name)
    if not isinstance(text, str):
        raise ValueFormatError(f"JWK member {name!r} is missing or not a string")
    cleaned = text.strip().rstrip("=").replace("+", "-").replace("/", "_")
    try:
        return base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise ValueFormatError(f"JWK member {name!r} is not base64url") from None


def public_key_to_jwk(key: PublicKey) -> dict[str, str]:
    if isinstance(key, rsa.RSAPublicKey):
        nums = key.public_numbers()
        return {
            "kty": "RSA",
            "n": _b64u(_unsigned_bytes(nums.n)),
            "e": _b64u(_unsigned_bytes(nums.e)),
        }
    if isinstance(key, ec.EllipticCurvePublicKey):
        crv = _CURVE_NAMES.get(type(key.curve))
        if crv is None:
            raise ValueFormatError(f"EC curve {key.curve.name} has no JWK name here")
        size = (key.curve.key_size + 7) // 8
        enc = key.public_numbers()
        return {
            "kty": "EC",
            "crv": crv,
            "x": _b64u(_unsigned_bytes(enc.x, size)),
            "y": _b64u(_unsigned_bytes(enc.y, size)),
        }
    if isinstance(key, ed25519.Ed25519PublicKey):
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {"kty": "OKP", "crv": "Ed25519", "x": _b64u(raw)}
    if isinstance(key, dsa.DSAPublicKey):
        dnums = key.public_numbers()
        params = dnums.parameter_numbers
        return {
            "kty": "DSA",
            "y": _b64u(_unsigned_bytes(dnums.y)),
            "p": _b64u(_unsigned_bytes(params.p)),
            "q": _b64u(_unsigned_bytes(params.q)),
            "g": _b64u(_unsigned_bytes(params.g)),
        }
    raise ValueFormatError(f"unsupported public key type {type(key).__name__}")


def public_key_from_jwk(jwk: Mapping[str, Any]) -> PublicKey:
    """A public key from its JWK. A JWK carrying private members is refused rather than
    silently stripped: publishing it would be a leak the client did not mean."""
    if not isinstance(jwk, Mapping):
        raise ValueFormatError("JWK is not an object")
    kty = jwk.get("kty")
    if not isinstance(kty, str):
        raise ValueFormatError("JWK member 'kty' is missing or not a string")
    kty = kty.upper()
    private = "x" if kty == "DSA" else "d"
    if private in jwk:
        raise ValueFormatError(
            f"JWK carries the private member {private!r}; send the public key only"
        )
    try:
        if kty == "RSA":
            return rsa.RSAPublicNumbers(_b64u_int(jwk, "e"), _b64u_int(jwk, "n")).public_key()
        if kty == "EC":
            crv = jwk.get("crv")
            curve = _CURVES.get(crv) if isinstance(crv, str) else None
            if curve is None:
                raise ValueFormatError(f"JWK curve {crv!r} is not one of {', '.join(_CURVES)}")
            size = (curve.key_size + 7) // 8
            xb, yb = _b64u_bytes(jwk, "x"), _b64u_bytes(jwk, "y")
            if len(xb) != size or len(yb) != size:
                raise ValueFormatError(f"JWK {crv} coordinates must be {size} bytes each")
            point = ec.EllipticCurvePublicNumbers(
                int.from_bytes(xb, "big"), int.from_bytes(yb, "big"), curve
            )
            return point.public_key()
        if kty == "OKP":
            if jwk.get("crv") != "Ed25519":
                raise ValueFormatError(f"JWK OKP curve {jwk.get('crv')!r} is not Ed25519")
            raw = _b64u_bytes(jwk, "x")
            if len(raw) != 32:
                raise ValueFormatError("JWK Ed25519 key must be 32 bytes")
            return ed25519.Ed25519PublicKey.from_public_bytes(raw)
        if kty == "DSA":
            dy, dp, dq, dg = (_b64u_int(jwk, name) for name in "ypqg")
            return dsa.DSAPublicNumbers(dy, dsa.DSAParameterNumbers(dp, dq, dg)).public_key()
    except _CONSTRUCT_ERRORS as exc:
        raise ValueFormatError(f"invalid {kty} JWK: {exc}") from None
    raise ValueFormatError(f"JWK key type {kty!r} is not one of RSA, EC, OKP, DSA")
