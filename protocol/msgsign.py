"""Signed messages (RFC 3652 §2.2.4): an HS_SIGNED credential made with the site key.

A request with the CERT flag gets a reply whose credential section carries a signature
over ``negotiate.signed_bytes`` (from 2.7: version, session and request ids, session
counter, then header + body), made with the private key whose public half is in the
server's HS_SITE, so a client that trusts the site info can trust the reply even
through a cache. The digest algorithm name is the one the reference writes ("SHA-256").

``SignatureMemo`` keeps signatures for reuse where the signed bytes repeat: below 2.7
they hold no session or request id (header + body only; at 2.6 the reference's
overwritten id bytes, which keep only part of the session id), so two requests of the
same shape get replies whose signed bytes differ at most in the expiration the server
stamps (its clock + 12 h). A memoised signature is reused, with the expiration it was
made with, while that expiration is at most ``window_s`` older than a fresh one would
be: the reply then expires up to ``window_s`` early, and nothing else changes. The key
is the signed bytes themselves (hashed), values included, so a changed record can never
be answered with an old signature. From 2.7 the request id is signed, no two replies
share their signed bytes, and nothing is memoised.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import replace

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, padding, rsa

from .errors import LocalProtocolError, ProtocolError
from .message import Credential, Message
from .negotiate import at_least, signed_bytes

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


def signing_input(message: Message) -> bytes:
    """The bytes an HS_SIGNED credential of ``message`` signs (session counter 0)."""
    return signed_bytes(replace(message, credential=Credential(SIGNED, b"")), session_counter=0)


def with_signature(message: Message, signature: bytes, digest: str = "SHA-256") -> Message:
    """``message`` with an HS_SIGNED credential carrying ``signature`` (made over
    ``signing_input(message)``): the two halves of ``sign_message``, for a caller that
    signs elsewhere (another thread)."""
    return replace(message, credential=Credential.make(SIGNED, digest, signature))


def sign_message(message: Message, key: SiteKey, *, digest: str = "SHA-256") -> Message:
    """The message with an HS_SIGNED credential over its signed bytes."""
    if digest not in _HASHES:
        raise LocalProtocolError(f"digest algorithm {digest!r} is not supported")
    return with_signature(message, sign_data(key, signing_input(message), digest), digest)


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


# The first version whose signed bytes carry the request id (negotiate.signed_bytes).
IDS_SIGNED_FROM = (2, 7)
_U32_MASK = 0xFFFFFFFF


class SignatureMemo:
    """Signatures made for replies below 2.7, by the bytes they cover with the
    expiration left out (see the module docstring); at most ``max_entries``, least
    recently used out first."""

    def __init__(self, max_entries: int = 4096, *, window_s: int = 60):
        self.max_entries = max_entries
        self.window_s = window_s
        self._kept: OrderedDict[bytes, tuple[int, Credential]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._kept)

    @staticmethod
    def reusable(message: Message) -> bool:
        """Whether another request can be answered with this reply's signature."""
        return not at_least(message.envelope.version, IDS_SIGNED_FROM)

    @staticmethod
    def _key(message: Message) -> bytes:
        undated = replace(message, header=replace(message.header, expiration=0), credential=None)
        return hashlib.sha256(signed_bytes(undated, session_counter=0)).digest()

    def find(self, message: Message, digest: str = "SHA-256") -> Message | None:
        """``message`` (unsigned, freshly stamped) signed with a kept signature, its
        expiration the one signed; None when there is none fresh enough."""
        if not self.reusable(message):
            return None
        key = self._key(message)
        kept = self._kept.get(key)
        if kept is None:
            return None
        expiration, credential = kept
        if (message.header.expiration - expiration) & _U32_MASK > self.window_s:
            del self._kept[key]  # too old to reuse: the next signature replaces it
            return None
        try:
            if credential.digest_algorithm != digest:
                return None
        except ProtocolError:
            return None
        self._kept.move_to_end(key)
        return replace(
            message,
            header=replace(message.header, expiration=expiration),
            credential=credential,
        )

    def keep(self, signed: Message) -> None:
        """Remember ``signed``'s signature for later replies with the same signed bytes."""
        if signed.credential is None or not self.reusable(signed):
            return
        key = self._key(signed)
        self._kept[key] = (signed.header.expiration, signed.credential)
        self._kept.move_to_end(key)
        while len(self._kept) > self.max_entries:
            self._kept.popitem(last=False)
