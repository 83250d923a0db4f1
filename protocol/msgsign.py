"""Signed messages (RFC 3652 §2.2.4): an HS_SIGNED credential made with the site key.

A request with the CERT flag gets a reply whose credential section carries a signature
over ``negotiate.signed_bytes`` (from 2.7: version, session and request ids, session
counter, then header + body), made with the private key whose public half is in the
server's HS_SITE, so a client that trusts the site info can trust the reply even
through a cache. The digest algorithm name is the one the reference writes ("SHA-256").
"""

from __future__ import annotations

from dataclasses import replace

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, padding, rsa

from .errors import LocalProtocolError, ProtocolError
from .message import Credential, Message
from .negotiate import signed_bytes

SIGNED = "HS_SIGNED"
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "SHA-256": hashes.SHA256,
    "SHA256": hashes.SHA256,
    "SHA-1": hashes.SHA1,
    "SHA1": hashes.SHA1,
}

SiteKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | dsa.DSAPrivateKey
SitePublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | dsa.DSAPublicKey


def sign_data(key: SiteKey, data: bytes, digest: str = "SHA-256") -> bytes:
    """A signature as Java's ``Signature`` makes it: RSA PKCS#1 v1.5, DSA and ECDSA in
    DER. ``digest`` is a Handle hash name ("SHA-256", "SHA256", "SHA-1", "SHA1")."""
    hash_cls = _HASHES.get(digest)
    if hash_cls is None:
        raise LocalProtocolError(f"digest algorithm {digest!r} is not supported")
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hash_cls())
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(hash_cls()))
    if isinstance(key, dsa.DSAPrivateKey):
        return key.sign(data, hash_cls())
    raise LocalProtocolError(f"cannot sign with a {type(key).__name__}")


def verify_data(public_key: object, data: bytes, signature: bytes, digest: str) -> bool:
    """True when ``signature`` over ``data`` verifies under an RSA, DSA or EC key with the
    named hash; any other key type or hash name does not verify."""
    hash_cls = _HASHES.get(digest)
    if hash_cls is None:
        return False
    try:
        if isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, data, padding.PKCS1v15(), hash_cls())
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, data, ec.ECDSA(hash_cls()))
        elif isinstance(public_key, dsa.DSAPublicKey):
            public_key.verify(signature, data, hash_cls())
        else:
            return False
    except (InvalidSignature, ValueError):
        return False
    return True


def sign_message(message: Message, key: SiteKey, *, digest: str = "SHA-256") -> Message:
    """The message with an HS_SIGNED credential over its signed bytes."""
    if digest not in _HASHES:
        raise LocalProtocolError(f"digest algorithm {digest!r} is not supported")
    unsigned = replace(message, credential=Credential(SIGNED, b""))
    signature = sign_data(key, signed_bytes(unsigned, session_counter=0), digest)
    return replace(message, credential=Credential.make(SIGNED, digest, signature))


def verify_message(message: Message, public_key: SitePublicKey) -> bool:
    """True when the message carries an HS_SIGNED credential that verifies under
    ``public_key`` over exactly the bytes received."""
    cred = message.credential
    if cred is None or cred.type != SIGNED:
        return False
    try:
        digest, signature = cred.digest_algorithm, cred.signature
    except ProtocolError:
        return False
    data = signed_bytes(message, session_counter=cred.signer_index)
    return verify_data(public_key, data, signature, digest)
