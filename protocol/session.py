"""Sessions (docs/authentication.md, "Sessions"): the Diffie-Hellman agreement, the
HS_MAC credential and the encryption of in-session messages.

Key agreement: the client sends its DH key (a group of its choosing: RFC 2409 group 2
from the reference client, RFC 3526 group 14 from a raw one, admin capture #16); the
server answers in the same group. Session key = the shared secret, big-endian with its
leading zero bytes stripped, first 32 bytes (admin captures #2, #7, #16).

HS_MAC, by each message's own envelope version (admin capture #5 note):
- from 2.7: hash name "HMAC-SHA256", HMAC-SHA256(session key, ``negotiate.signed_bytes``
  with the session counter), the counter in the credential's u32 signer-index slot
  after an empty signer handle (admin capture #15 note);
- 2.5 and 2.6: hash name "SHA1", SHA-1 over key[0:4] | header+body | key | (len(key)+10)
  zero bytes: the reference overwrites its own version, id and counter fields while
  building the buffer (admin capture #5 note), so the MAC binds none of them. We
  reproduce it to interoperate; a node should refuse a replayed counter all the same.
Below 2.5 there are no sessions.

Encryption (admin capture #19; also, unasked, replies from 2.8 carrying non-public
values, admin capture #2): envelope flag 0x40, payload = 16-byte IV | AES-128-CBC/PKCS5
of header + body + u32 credential length + credential, key = the first 16 bytes of the
session key. CBC has no integrity of its own: decrypt, then check the HS_MAC inside,
and answer a bad padding exactly like a bad MAC.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import replace

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from gmpy2 import powmod  # type: ignore[import-untyped]  # (ships no type information)

from .errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from .message import (
    ENVELOPE_BYTES,
    HEADER_BYTES,
    MAX_MESSAGE_BYTES,
    Credential,
    Envelope,
    EnvelopeFlag,
    Message,
    header_and_body,
)
from .negotiate import at_least, signed_bytes
from .sessionbodies import (
    CIPHER_AES,
    DEFAULT_SESSION_TIMEOUT_S,
    DHPublicKey,
    SessionMode,
    SessionSetupReply,
    SessionSetupRequest,
    dh_reply_data,
    parse_dh_reply_data,
)

__all__ = [
    "CIPHER_AES",
    "DEFAULT_SESSION_TIMEOUT_S",
    "HS_MAC",
    "SESSION_KEY_BYTES",
    "DHPublicKey",
    "SessionMode",
    "SessionSetupReply",
    "SessionSetupRequest",
    "check_dh_group",
    "check_mac",
    "decrypt_message",
    "dh_keypair",
    "dh_reply_data",
    "dh_session_key",
    "encrypt_message",
    "mac_message",
    "parse_dh_reply_data",
]

HS_MAC = "HS_MAC"
SESSION_KEY_BYTES = 32
AES_KEY_BYTES = 16
IV_BYTES = 16
MAC_HASH = "HMAC-SHA256"
LEGACY_MAC_HASH = "SHA1"
# The private exponent's size: twice the strength of the largest group we accept is
# ample (NIST SP 800-56A short exponents), and keeps a 4096-bit agreement cheap.
_PRIVATE_BITS = 512


# --- Diffie-Hellman -------------------------------------------------------------------


def check_dh_group(key: DHPublicKey, *, min_bits: int = 1024, max_bits: int = 2048) -> None:
    """Refuse a peer's DH key whose group is too small or too large, or whose g or y is
    degenerate (0, 1, p-1 or out of range). The work is ours, on an unauthenticated
    request: two modular exponentiations (GMP's, ~7x Python's) cost ~0.3 ms at 1,024 bits
    (what the reference client sends, docs/authentication.md) and ~1.8 ms at 2,048, but grow
    with the cube of the size, so 2,048 is the most taken."""
    bits = key.p.bit_length() if key.p > 0 else 0
    if not min_bits <= bits <= max_bits:
        raise RemoteProtocolError(f"DH p of {bits} bits is outside {min_bits}..{max_bits}")
    for name, n in (("g", key.g), ("y", key.y)):
        if not 2 <= n <= key.p - 2:
            raise RemoteProtocolError(f"DH {name} is outside 2..p-2")


def dh_keypair(p: int, g: int) -> tuple[int, int]:
    """(private x, public y) in the peer's group; x from ``secrets``."""
    bits = min(_PRIVATE_BITS, p.bit_length() - 2)
    if bits < 2:
        raise LocalProtocolError("DH p is too small")
    x = secrets.randbits(bits) | (1 << (bits - 1))  # full length, so never 0 or 1
    return x, int(powmod(g, x, p))


def dh_session_key(private_x: int, peer_y: int, p: int) -> bytes:
    """The session key: shared secret, leading zero bytes stripped, first 32 bytes."""
    shared = int(powmod(peer_y, private_x, p))
    return shared.to_bytes((shared.bit_length() + 7) // 8, "big")[:SESSION_KEY_BYTES]


# --- HS_MAC ---------------------------------------------------------------------------


def _legacy_mac_input(message: Message, key: bytes) -> bytes:
    # Capture #5 note: what the 2.5/2.6 buffer holds once the overwrites are done.
    return key[:4] + header_and_body(message) + key + bytes(len(key) + 10)


def _mac(message: Message, key: bytes, counter: int) -> tuple[str, bytes]:
    version = message.envelope.version
    if at_least(version, (2, 7)):
        data = signed_bytes(message, session_counter=counter)
        return MAC_HASH, hmac.new(key, data, hashlib.sha256).digest()
    if at_least(version, (2, 5)):
        if len(key) < 4:
            raise LocalProtocolError("a session key is at least 4 bytes")
        return LEGACY_MAC_HASH, hashlib.sha1(_legacy_mac_input(message, key)).digest()
    raise LocalProtocolError(f"no HS_MAC is defined at version {version[0]}.{version[1]}")


def mac_message(message: Message, session_key: bytes, counter: int) -> Message:
    """The message with an HS_MAC credential made with the session key; ``counter`` is
    the sender's own message counter in this session (from 1; admin capture #5 note)."""
    if not 0 <= counter <= 0xFFFFFFFF:
        raise LocalProtocolError(f"session counter {counter} is outside 0..4294967295")
    unmaced = replace(message, credential=None)
    name, mac = _mac(unmaced, session_key, counter)
    return replace(message, credential=Credential.make(HS_MAC, name, mac, signer_index=counter))


def check_mac(message: Message, session_key: bytes) -> bool:
    """True when the message carries an HS_MAC that verifies under the session key with
    the counter it carries, over exactly the bytes received. The counter's freshness is
    the caller's to check."""
    cred = message.credential
    if cred is None or cred.type != HS_MAC:
        return False
    try:
        name, mac = cred.digest_algorithm, cred.signature
        expected_name, expected = _mac(message, session_key, cred.signer_index)
    except ProtocolError:
        return False
    return name == expected_name and hmac.compare_digest(mac, expected)


# --- encryption -----------------------------------------------------------------------


def _cipher(session_key: bytes, iv: bytes) -> Cipher[modes.CBC]:
    if len(session_key) < AES_KEY_BYTES:
        raise LocalProtocolError(f"a session key is at least {AES_KEY_BYTES} bytes")
    return Cipher(algorithms.AES(session_key[:AES_KEY_BYTES]), modes.CBC(iv))


def encrypt_message(encoded: bytes, session_key: bytes, iv: bytes) -> bytes:
    """An encoded message (``message.encode``) encrypted for the session; ``iv`` is 16
    fresh random bytes."""
    if len(iv) != IV_BYTES:
        raise LocalProtocolError(f"the IV is {len(iv)} bytes, not {IV_BYTES}")
    env = Envelope.from_wire(encoded)
    padder = padding.PKCS7(128).padder()
    plain = padder.update(encoded[ENVELOPE_BYTES:]) + padder.finalize()
    enc = _cipher(session_key, iv).encryptor()
    payload = iv + enc.update(plain) + enc.finalize()
    if len(payload) > MAX_MESSAGE_BYTES:
        raise LocalProtocolError(f"encrypted message of {len(payload)} bytes is too long")
    env = replace(env, flags=env.flags | EnvelopeFlag.ENCRYPTED, length=len(payload))
    return env.to_wire() + payload


def decrypt_message(data: bytes, session_key: bytes) -> bytes:
    """The plain message of an encrypted one: ENCRYPTED flag cleared, length fixed;
    ready for ``message.decode``."""
    env = Envelope.from_wire(data)
    if EnvelopeFlag.ENCRYPTED not in env.flags:
        raise LocalProtocolError("the message is not encrypted")
    payload = data[ENVELOPE_BYTES:]
    if env.length != len(payload):
        raise RemoteProtocolError(
            f"envelope announces {env.length} encrypted bytes, {len(payload)} present"
        )
    if len(payload) < 2 * IV_BYTES or len(payload) % IV_BYTES:
        raise RemoteProtocolError(
            f"encrypted payload of {len(payload)} bytes is not an IV and whole AES blocks"
        )
    dec = _cipher(session_key, bytes(payload[:IV_BYTES])).decryptor()
    padded = dec.update(bytes(payload[IV_BYTES:])) + dec.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        plain = unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise RemoteProtocolError("encrypted payload padding is invalid") from None
    if len(plain) < HEADER_BYTES:
        raise RemoteProtocolError(f"decrypted message of {len(plain)} bytes has no header")
    env = replace(env, flags=env.flags & ~EnvelopeFlag.ENCRYPTED, length=len(plain))
    return env.to_wire() + plain
