"""Client side of the REST session challenge, as Handle.Net's clients compute it: keys,
their HS_PUBKEY values, and the ``Authorization: Handle`` answer (signature over the
decoded nonce bytes followed by the decoded cnonce bytes, both sent base64)."""

from __future__ import annotations

import base64
import json
import os
from typing import Any
from urllib.parse import quote

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from protocol.keys import public_key_to_jwk

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | dsa.DSAPrivateKey


def new_key(kind: str) -> PrivateKey:
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "dsa":
        return dsa.generate_private_key(key_size=1024)  # small: parameter generation is slow
    raise ValueError(kind)


def pubkey_value(key: PrivateKey, index: int = 300) -> dict[str, Any]:
    """The HS_PUBKEY value of ``key``: a JWK in the REST ``key`` format for RSA and DSA
    (stored in Handle key format), JWK JSON text for EC (Handle's format has no EC)."""
    jwk = public_key_to_jwk(key.public_key())
    if isinstance(key, ec.EllipticCurvePrivateKey):
        data: dict[str, Any] = {"format": "string", "value": json.dumps(jwk)}
    else:
        data = {"format": "key", "value": jwk}
    return {"index": index, "type": "HS_PUBKEY", "data": data}


def sign(key: PrivateKey, alg: str, message: bytes, *, raw_ec: bool = False) -> bytes:
    h: hashes.HashAlgorithm = hashes.SHA1() if alg.upper() in ("SHA1", "SHA-1") else hashes.SHA256()
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(message, padding.PKCS1v15(), h)
    if isinstance(key, dsa.DSAPrivateKey):
        return key.sign(message, h)
    der = key.sign(message, ec.ECDSA(h))
    if not raw_ec:
        return der
    r, s = decode_dss_signature(der)
    size = (key.curve.key_size + 7) // 8
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")  # WebCrypto's form


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def session_header(session_id: str) -> dict[str, str]:
    return {"Authorization": f'Handle version="0", sessionId="{session_id}"'}


def answer(
    session: dict[str, Any],
    admin_id: str,
    key: PrivateKey,
    alg: str = "SHA256",
    *,
    raw_ec: bool = False,
    encode_id: bool = True,
    tamper: bool = False,
    kind: str = "HS_PUBKEY",
) -> dict[str, str]:
    """``Authorization`` answering ``session``'s challenge as ``admin_id``."""
    cnonce = os.urandom(16)
    signature = sign(key, alg, base64.b64decode(session["nonce"]) + cnonce, raw_ec=raw_ec)
    if tamper:
        signature = signature[:-1] + bytes([signature[-1] ^ 1])
    ident = quote(admin_id, safe="") if encode_id else admin_id
    return {
        "Authorization": (
            f'Handle version="0", sessionId="{session["sessionId"]}", cnonce="{b64(cnonce)}", '
            f'id="{ident}", type="{kind}", alg="{alg}", signature="{b64(signature)}"'
        )
    }
