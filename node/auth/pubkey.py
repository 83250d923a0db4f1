"""HS_PUBKEY values and the signatures made with their private halves.

What a value may hold (first match wins):

- Handle key format (``RSA_PUB_KEY`` / ``DSA_PUB_KEY``, what the reference writes and the
  REST API's ``{"format": "key"}`` stores);
- a JWK as JSON text (``{"kty": "EC", ...}``): Handle's key format has no EC encoding, so
  this is how an EC (or Ed25519) key is published;
- a PEM ``PUBLIC KEY`` (SubjectPublicKeyInfo).

Signatures follow Java's ``Signature`` algorithms, which the reference picks as
``<hash>with<key algorithm>`` (``Util.getSigIdFromHashAlgId``): PKCS#1 v1.5 for RSA, DER
``(r, s)`` for DSA and ECDSA. ECDSA also accepts the raw ``r || s`` form WebCrypto
produces, so a browser client can answer. Ed25519 signs the message itself; its
``alg`` is ignored. MD5 (which the reference still accepts) is refused.

What a verification may cost is bounded (``protocol.keys.costly_key``): a key over the
bounds is refused when written (``check_key_value``) and skipped, unverified, when one
written before is met (``usable_key``).
"""

from __future__ import annotations

import enum
import json

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from protocol.errors import ValueFormatError
from protocol.keys import PublicKey, costly_key, decode_public_key, public_key_from_jwk
from protocol.values import HandleValue

# The reference's names for its hash algorithms (``constructSignedResponse``), upper-cased.
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "SHA": hashes.SHA1,
    "SHA1": hashes.SHA1,
    "SHA-1": hashes.SHA1,
    "SHA256": hashes.SHA256,
    "SHA-256": hashes.SHA256,
    "SHA2": hashes.SHA256,
    "SHA-2": hashes.SHA256,
}
MAX_KEY_BYTES = 16_384  # an HS_PUBKEY value is admin-written data: bound the parsing work


def hash_for_alg(alg: str) -> hashes.HashAlgorithm | None:
    cls = _HASHES.get(alg.strip().upper())
    return cls() if cls is not None else None


def load_public_key(data: bytes) -> PublicKey:
    """The public key an HS_PUBKEY value holds; ValueFormatError when it holds none."""
    if len(data) > MAX_KEY_BYTES:
        raise ValueFormatError("public key value is too large")
    head = data.lstrip()[:1]
    if head == b"{":
        try:
            jwk = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise ValueFormatError("public key value is not a JSON JWK") from None
        return public_key_from_jwk(jwk)
    if head == b"-":
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, UnsupportedAlgorithm):
            raise ValueFormatError("public key value is not a PEM public key") from None
        if not isinstance(
            key,
            (
                rsa.RSAPublicKey,
                dsa.DSAPublicKey,
                ec.EllipticCurvePublicKey,
                ed25519.Ed25519PublicKey,
            ),
        ):
            raise ValueFormatError(f"unsupported public key type {type(key).__name__}")
        return key
    return decode_public_key(data)


PUBKEY_TYPE = "HS_PUBKEY"


class Unusable(enum.Enum):
    """Why a stored HS_PUBKEY value was not tried (a metrics label)."""

    UNREADABLE = "unreadable"  # holds no key this node reads
    COSTLY = "cost"  # a key over the bounds: never verified with


def usable_key(data: bytes) -> PublicKey | Unusable:
    """The key an HS_PUBKEY value holds, when verifying with it stays within the bounds."""
    try:
        key = load_public_key(data)
    except ValueFormatError:
        return Unusable.UNREADABLE
    return Unusable.COSTLY if costly_key(key) is not None else key


def check_key_value(value: HandleValue) -> None:
    """Refuse an HS_PUBKEY value whose key is over the bounds (ValueFormatError naming
    the rule). Data that holds no key this node reads is stored as given, as the
    reference stores it: it is never used to verify anything."""
    if value.type.upper() != PUBKEY_TYPE:
        return
    try:
        key = load_public_key(value.data)
    except ValueFormatError:
        return
    problem = costly_key(key)
    if problem is not None:
        raise ValueFormatError(f"value {value.index}: HS_PUBKEY {problem}")


def _ecdsa_forms(key: ec.EllipticCurvePublicKey, signature: bytes) -> list[bytes]:
    size = (key.curve.key_size + 7) // 8
    forms = [signature]
    if len(signature) == 2 * size:  # raw r || s (WebCrypto, JOSE) -> DER
        r = int.from_bytes(signature[:size], "big")
        s = int.from_bytes(signature[size:], "big")
        forms.append(encode_dss_signature(r, s))
    return forms


def verify_signature(
    key: PublicKey, alg: hashes.HashAlgorithm, message: bytes, signature: bytes
) -> bool:
    """Does ``signature`` sign ``message`` under ``key`` with hash ``alg``?"""
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, message, padding.PKCS1v15(), alg)
            return True
        if isinstance(key, dsa.DSAPublicKey):
            key.verify(signature, message, alg)
            return True
        if isinstance(key, ec.EllipticCurvePublicKey):
            for form in _ecdsa_forms(key, signature):
                try:
                    key.verify(form, message, ec.ECDSA(alg))
                    return True
                except InvalidSignature:
                    continue
            return False
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, message)
            return True
    except (InvalidSignature, ValueError, UnsupportedAlgorithm):
        return False
    return False


def same_public_key(a: PublicKey, b: PublicKey) -> bool:
    """Equal keys, whatever form each was read from (compared as SubjectPublicKeyInfo)."""
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    try:
        return a.public_bytes(*spki) == b.public_bytes(*spki)
    except (ValueError, UnsupportedAlgorithm):
        return False
