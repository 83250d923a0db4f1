"""Challenge-response authentication (docs/authentication.md, "Challenge (RC 402)" and
"Answer (opcode 200)"): the 402 reply, and making and checking the signed responses.

Secret-key responses (k = the HS_SECKEY value's bytes, n = nonce, d = request digest):

  form  bytes                                              sent by
  none  MD5(k|n|d|k), 16 bytes, no form byte              clients below 2.1 (admin capture #4)
  0x01  0x01 + MD5(k|n|d|k)                               raw clients (admin capture #23)
  0x02  0x02 + SHA-1(k|n|d|k)                             2.1-2.6 clients (admin capture #3)
  0x03  0x03 + SHA-256(k|n|d|k)                           raw clients (admin capture #23)
  0x12  0x12 + HMAC-SHA1(k, n|d)                          raw clients (admin capture #23)
  0x13  0x13 + HMAC-SHA256(k, n|d)                        raw clients (admin capture #23)
  0x22  0x22 + STR salt + INT iterations + INT key bits   clients from 2.7 (admin capture #1)
        (160) + STR HMAC-SHA1(PBKDF2-HMAC-SHA1(k, salt, iterations, 160 bits), n|d)

The reference accepts every form at every version (admin capture #23); ``allowed``
lets a node set its own minimum. For 0x22 the PBKDF2 password is the UTF-8 encoding of
k read as Latin-1 (admin capture #22: the reference turns each key byte into a Java
char, and the JCE encodes that char[] as UTF-8); the other forms use k as is.

Public-key responses: STR hash name ("SHA-256", or "SHA1" from old clients) + STR
signature over n|d, RSA PKCS#1 v1.5, DSA or ECDSA in DER as Java makes them
(admin captures #17, #18). SM2 keys of the IDIS SDKs are not supported:
``cryptography`` cannot verify SM2 signatures.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
from dataclasses import dataclass, replace

from .authbodies import (
    HS_PUBKEY,
    HS_SECKEY,
    ChallengeAnswer,
    VerifyChallengeReply,
    VerifyChallengeRequest,
)
from .bodies import ChallengeReply, HashType
from .codes import OpFlag, ResponseCode
from .errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from .keys import PublicKey
from .message import Message, Version, header_and_body
from .msgsign import SiteKey, sign_data, verify_data
from .negotiate import at_least, build_reply, request_digest
from .wirebase import Reader, Writer

__all__ = [
    "HS_PUBKEY",
    "HS_SECKEY",
    "NONCE_BYTES",
    "PUBKEY_HASH_NAMES",
    "ChallengeAnswer",
    "ChallengeReply",
    "SeckeyAnswer",
    "SeckeyForm",
    "VerifyChallengeReply",
    "VerifyChallengeRequest",
    "challenge_reply",
    "check_pubkey_answer",
    "check_seckey_answer",
    "make_nonce",
    "make_pubkey_answer",
    "make_seckey_answer",
    "parse_seckey_answer",
    "seckey_form_for",
]

NONCE_BYTES = 16
PBKDF2_KEY_BITS = 160
PBKDF2_ITERATIONS = 10_000
PBKDF2_SALT_BYTES = 16
PUBKEY_HASH_NAMES = frozenset({"SHA-256", "SHA256", "SHA-1", "SHA1"})


# Echoed into the 402 on top of ``negotiate.ECHOED_FLAGS`` (admin captures #5, #8, #19).
_ECHOED = OpFlag.CERT | OpFlag.ENCR


def make_nonce() -> bytes:
    return secrets.token_bytes(NONCE_BYTES)


def challenge_reply(
    request: Message, nonce: bytes, *, now: float, site_serial: int, session_id: int
) -> Message:
    """The 402 reply to ``request`` as the reference builds it: the request's opcode,
    RRDG set with the request digest (SHA-256 from reply version 2.7, SHA-1 from 2.1),
    the challenge's session id in the envelope, the other conventions of
    ``negotiate.build_reply``. Below 2.1, RRDG is clear and the MD5 digest follows the
    nonce in the body (admin capture #4). CERT and ENCR are echoed (admin captures #5,
    #8, #19); the caller signs the reply when CERT is set (``session.mac_message``
    inside a session, else ``msgsign``) and encrypts it in an encrypting session."""
    reply = build_reply(
        request,
        ResponseCode.AUTHENTICATION_NEEDED,
        ChallengeReply(nonce),
        now=now,
        site_serial=site_serial,
        extra_flags=OpFlag.RRDG | (request.header.flags & _ECHOED),
    )
    if reply.digest is None:
        legacy = request_digest(header_and_body(request), HashType.MD5)
        reply = replace(reply, body=ChallengeReply(nonce, legacy))
    return replace(reply, envelope=replace(reply.envelope, session_id=session_id))


# --- secret keys ----------------------------------------------------------------------


class SeckeyForm(enum.IntEnum):
    MD5_OLD = -1  # no form byte
    MD5 = 0x01
    SHA1 = 0x02
    SHA256 = 0x03
    HMAC_SHA1 = 0x12
    HMAC_SHA256 = 0x13
    PBKDF2_HMAC_SHA1 = 0x22


_KNK_HASHES = {
    SeckeyForm.MD5_OLD: "md5",
    SeckeyForm.MD5: "md5",
    SeckeyForm.SHA1: "sha1",
    SeckeyForm.SHA256: "sha256",
}
_HMAC_HASHES = {
    SeckeyForm.HMAC_SHA1: "sha1",
    SeckeyForm.HMAC_SHA256: "sha256",
    SeckeyForm.PBKDF2_HMAC_SHA1: "sha1",
}
_MAC_BYTES = {
    SeckeyForm.MD5_OLD: 16,
    SeckeyForm.MD5: 16,
    SeckeyForm.SHA1: 20,
    SeckeyForm.SHA256: 32,
    SeckeyForm.HMAC_SHA1: 20,
    SeckeyForm.HMAC_SHA256: 32,
    SeckeyForm.PBKDF2_HMAC_SHA1: 20,
}


@dataclass(frozen=True, slots=True)
class SeckeyAnswer:
    """A parsed secret-key response; salt, iterations and key bits only for 0x22."""

    form: SeckeyForm
    mac: bytes
    salt: bytes = b""
    iterations: int = 0
    key_bits: int = 0


def seckey_form_for(version: Version) -> SeckeyForm:
    """The form a reference client at this message version sends."""
    if at_least(version, (2, 7)):
        return SeckeyForm.PBKDF2_HMAC_SHA1
    if at_least(version, (2, 1)):
        return SeckeyForm.SHA1
    return SeckeyForm.MD5_OLD


def _pbkdf2_password(key: bytes) -> bytes:
    # Capture #22: Java maps each key byte to a char, the JCE hashes that char[] as UTF-8.
    return key.decode("latin-1").encode("utf-8")


def _mac(
    key: bytes, nonce: bytes, digest: bytes, form: SeckeyForm, salt: bytes, iterations: int
) -> bytes:
    if form in _KNK_HASHES:
        return hashlib.new(_KNK_HASHES[form], key + nonce + digest + key).digest()
    mac_key = key
    if form is SeckeyForm.PBKDF2_HMAC_SHA1:
        mac_key = hashlib.pbkdf2_hmac(
            "sha1", _pbkdf2_password(key), salt, iterations, PBKDF2_KEY_BITS // 8
        )
    return hmac.new(mac_key, nonce + digest, _HMAC_HASHES[form]).digest()


def make_seckey_answer(
    key: bytes,
    nonce: bytes,
    digest: bytes,
    form: SeckeyForm,
    *,
    salt: bytes | None = None,
    iterations: int = PBKDF2_ITERATIONS,
) -> bytes:
    """The signed response a client holding ``key`` sends in this form (for 0x22 with a
    random 16-byte salt unless one is given)."""
    form = SeckeyForm(form)
    if form is not SeckeyForm.PBKDF2_HMAC_SHA1:
        mac = _mac(key, nonce, digest, form, b"", 0)
        return mac if form is SeckeyForm.MD5_OLD else bytes([form]) + mac
    if not 1 <= iterations <= 0xFFFFFFFF:
        raise LocalProtocolError(f"PBKDF2 iterations {iterations} are outside 1..4294967295")
    salt = secrets.token_bytes(PBKDF2_SALT_BYTES) if salt is None else salt
    w = Writer()
    w.u8(form)
    w.blob(salt)
    w.u32(iterations)
    w.u32(PBKDF2_KEY_BITS)
    w.blob(_mac(key, nonce, digest, form, salt, iterations))
    return w.getvalue()


def parse_seckey_answer(response: bytes) -> SeckeyAnswer:
    """Read a secret-key response; RemoteProtocolError names what is wrong. Sixteen
    bytes are the bare MD5 of old clients: no answer with a form byte is that long."""
    if len(response) == _MAC_BYTES[SeckeyForm.MD5_OLD]:
        return SeckeyAnswer(SeckeyForm.MD5_OLD, response)
    r = Reader(response)
    code = r.u8("secret key answer form")
    try:
        form = SeckeyForm(code)
    except ValueError:
        raise RemoteProtocolError(f"unknown secret key answer form {code:#04x}") from None
    if form is SeckeyForm.PBKDF2_HMAC_SHA1:
        salt = r.blob("PBKDF2 salt")
        iterations = r.u32("PBKDF2 iterations")
        bits = r.u32("PBKDF2 key length")
        mac = r.blob("PBKDF2 MAC")
        if len(mac) != _MAC_BYTES[form]:
            raise RemoteProtocolError(f"PBKDF2 MAC is {len(mac)} bytes, not 20")
        answer = SeckeyAnswer(form, mac, salt, iterations, bits)
    else:
        answer = SeckeyAnswer(form, r.raw(_MAC_BYTES[form], f"{form.name} answer"))
    if not r.at_end():
        raise RemoteProtocolError(f"{r.remaining()} trailing bytes after the {form.name} answer")
    return answer


def check_seckey_answer(
    key: bytes,
    nonce: bytes,
    digest: bytes,
    response: bytes,
    *,
    allowed: frozenset[SeckeyForm] | None = None,
    max_iterations: int = 100_000,
) -> SeckeyForm | None:
    """The form of ``response`` when it proves knowledge of ``key`` for this challenge,
    else None (malformed, a form not ``allowed``, or a wrong MAC). A 0x22 answer asking
    for more than ``max_iterations`` or for a key length other than 160 bits is refused
    before any PBKDF2 work: the client chooses the iteration count."""
    try:
        answer = parse_seckey_answer(response)
    except RemoteProtocolError:
        return None
    if allowed is not None and answer.form not in allowed:
        return None
    if answer.form is SeckeyForm.PBKDF2_HMAC_SHA1 and (
        answer.key_bits != PBKDF2_KEY_BITS or not 1 <= answer.iterations <= max_iterations
    ):
        return None
    expected = _mac(key, nonce, digest, answer.form, answer.salt, answer.iterations)
    return answer.form if hmac.compare_digest(expected, answer.mac) else None


# --- public keys ----------------------------------------------------------------------


def make_pubkey_answer(
    private_key: SiteKey, nonce: bytes, digest: bytes, hash_name: str = "SHA-256"
) -> bytes:
    """STR hash name + STR signature over nonce|digest."""
    if hash_name not in PUBKEY_HASH_NAMES:
        raise LocalProtocolError(f"hash {hash_name!r} is not one of {sorted(PUBKEY_HASH_NAMES)}")
    w = Writer()
    w.utf8(hash_name)
    w.blob(sign_data(private_key, nonce + digest, hash_name))
    return w.getvalue()


def check_pubkey_answer(
    public_key: PublicKey, nonce: bytes, digest: bytes, response: bytes
) -> bool:
    """True when ``response`` is a signature over nonce|digest by ``public_key`` (RSA,
    DSA or EC) with one of the accepted hash names; anything else is False."""
    r = Reader(response)
    try:
        hash_name = r.utf8("hash name")
        signature = r.blob("signature")
    except ProtocolError:
        return False
    if not r.at_end() or hash_name not in PUBKEY_HASH_NAMES:
        return False
    return verify_data(public_key, nonce + digest, signature, hash_name)
