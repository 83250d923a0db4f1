"""Challenge replies, secret- and public-key answers, DH, HS_MAC and session encryption
beyond the captured exchanges: every form and key type, the refusals, the bounds."""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.bodies import ChallengeReply, HashType, ResolutionRequest
from protocol.challenge import (
    SeckeyForm,
    challenge_reply,
    check_pubkey_answer,
    check_seckey_answer,
    make_nonce,
    make_pubkey_answer,
    make_seckey_answer,
    parse_seckey_answer,
    seckey_form_for,
)
from protocol.codes import OpCode, OpFlag, ResponseCode
from protocol.errors import LocalProtocolError, RemoteProtocolError
from protocol.idis import LoginIdSystemRequest
from protocol.message import Credential, Envelope, EnvelopeFlag, Header, Message, decode, encode
from protocol.negotiate import request_digest
from protocol.session import (
    DHPublicKey,
    check_dh_group,
    check_mac,
    decrypt_message,
    dh_keypair,
    dh_session_key,
    encrypt_message,
    mac_message,
)
from protocol.wirebase import Writer
from tests.protocol.admin_golden import GROUP2_P

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NOW = 1_796_218_014.2
NONCE, DIGEST = bytes(range(16)), bytes(range(100, 132))
KEY = b"secret123"


NO_FLAGS = OpFlag(0)


def request(
    version: tuple[int, int] = (2, 11), flags: OpFlag = NO_FLAGS, session: int = 0
) -> Message:
    env = Envelope(*version, suggested_major=version[0], suggested_minor=version[1])
    env = replace(env, session_id=session, request_id=0x1234)
    return Message(env, Header(OpCode.RESOLUTION, flags=flags), ResolutionRequest("88.118.2/P"))


# --- the 402 reply --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "hash_type"),
    [
        ((2, 11), HashType.SHA256),
        ((2, 7), HashType.SHA256),
        ((2, 6), HashType.SHA1),
        ((2, 1), HashType.SHA1),
    ],
)
def test_challenge_reply_digest_by_version(version: tuple[int, int], hash_type: HashType) -> None:
    req = decode(encode(request(version)))
    reply = challenge_reply(req, NONCE, now=NOW, site_serial=1, session_id=42)
    assert reply.header.opcode == OpCode.RESOLUTION
    assert reply.header.response_code == ResponseCode.AUTHENTICATION_NEEDED
    assert reply.header.flags == OpFlag.AUTH | OpFlag.RRDG
    assert reply.envelope.session_id == 42 and reply.envelope.request_id == 0x1234
    assert reply.digest is not None and reply.digest.hash_type is hash_type
    assert reply.body == ChallengeReply(NONCE)
    assert decode(encode(reply)).body == ChallengeReply(NONCE)


def test_challenge_reply_below_2_1_carries_md5_in_the_body() -> None:
    req = decode(encode(request((2, 0))))
    reply = challenge_reply(req, NONCE, now=NOW, site_serial=1, session_id=8)
    md5 = request_digest(encode(req)[20:-4], HashType.MD5)
    assert reply.digest is None and OpFlag.RRDG not in reply.header.flags
    assert reply.body == ChallengeReply(NONCE, md5)
    assert decode(encode(reply)).body == ChallengeReply(NONCE, md5)


def test_challenge_reply_echoes_cert_and_encr_and_keeps_idis_opcode() -> None:
    req = request(flags=OpFlag.CERT | OpFlag.ENCR | OpFlag.RECU | OpFlag.KPAL)
    reply = challenge_reply(req, NONCE, now=NOW, site_serial=3, session_id=5)
    assert reply.header.flags == (
        OpFlag.AUTH | OpFlag.CERT | OpFlag.ENCR | OpFlag.RECU | OpFlag.RRDG
    )
    login = replace(
        req, header=Header(OpCode.LOGIN_ID_SYSTEM), body=LoginIdSystemRequest("88.118/U", 300)
    )
    assert challenge_reply(login, NONCE, now=NOW, site_serial=3, session_id=5).header.opcode == 2001
    assert len(make_nonce()) == 16 and make_nonce() != make_nonce()


# --- secret-key answers ---------------------------------------------------------------


@SETTINGS
@given(
    st.binary(max_size=40),
    st.binary(min_size=1, max_size=32),
    st.binary(max_size=32),
    st.sampled_from(list(SeckeyForm)),
)
def test_every_form_roundtrips(key: bytes, nonce: bytes, digest: bytes, form: SeckeyForm) -> None:
    answer = make_seckey_answer(key, nonce, digest, form, iterations=3)
    assert check_seckey_answer(key, nonce, digest, answer) is form
    assert check_seckey_answer(key + b"x", nonce, digest, answer) is None
    assert check_seckey_answer(key, nonce + b"x", digest, answer) is None
    assert parse_seckey_answer(answer).form is form


def test_answer_sizes_and_form_bytes() -> None:
    sizes = {
        SeckeyForm.MD5_OLD: 16,
        SeckeyForm.MD5: 17,
        SeckeyForm.SHA1: 21,
        SeckeyForm.SHA256: 33,
        SeckeyForm.HMAC_SHA1: 21,
        SeckeyForm.HMAC_SHA256: 33,
        SeckeyForm.PBKDF2_HMAC_SHA1: 1 + 4 + 16 + 4 + 4 + 4 + 20,
    }
    for form, size in sizes.items():
        answer = make_seckey_answer(KEY, NONCE, DIGEST, form)
        assert len(answer) == size
        if form is not SeckeyForm.MD5_OLD:
            assert answer[0] == form
    assert (
        make_seckey_answer(KEY, NONCE, DIGEST, SeckeyForm.SHA1)[1:]
        == hashlib.sha1(KEY + NONCE + DIGEST + KEY).digest()
    )
    a, b = (make_seckey_answer(KEY, NONCE, DIGEST, SeckeyForm.PBKDF2_HMAC_SHA1) for _ in "ab")
    assert a[5:21] != b[5:21]  # fresh salts
    assert parse_seckey_answer(a).iterations == 10_000


def test_seckey_form_for() -> None:
    assert seckey_form_for((2, 0)) is SeckeyForm.MD5_OLD
    assert seckey_form_for((5, 0)) is SeckeyForm.MD5_OLD  # the old 2.0 clients' major 5
    assert seckey_form_for((2, 1)) is seckey_form_for((2, 6)) is SeckeyForm.SHA1
    assert seckey_form_for((2, 7)) is seckey_form_for((2, 11)) is SeckeyForm.PBKDF2_HMAC_SHA1


def _pbkdf2_answer(iterations: int, bits: int = 160, salt: bytes = b"s" * 16) -> bytes:
    w = Writer()
    w.u8(0x22)
    w.blob(salt)
    w.u32(iterations)
    w.u32(bits)
    w.blob(bytes(20))
    return w.getvalue()


def test_pbkdf2_cost_is_bounded_before_any_work(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object) -> bytes:
        raise AssertionError("PBKDF2 must not run")

    monkeypatch.setattr(hashlib, "pbkdf2_hmac", boom)  # what ``challenge`` calls
    for answer in (_pbkdf2_answer(100_001), _pbkdf2_answer(0), _pbkdf2_answer(10, bits=128)):
        assert check_seckey_answer(KEY, NONCE, DIGEST, answer) is None
    assert check_seckey_answer(KEY, NONCE, DIGEST, _pbkdf2_answer(50), max_iterations=49) is None


def test_pbkdf2_within_bounds_is_checked() -> None:
    answer = make_seckey_answer(KEY, NONCE, DIGEST, SeckeyForm.PBKDF2_HMAC_SHA1, iterations=20)
    assert check_seckey_answer(KEY, NONCE, DIGEST, answer, max_iterations=20) is not None
    assert check_seckey_answer(KEY, NONCE, DIGEST, answer, max_iterations=19) is None
    with pytest.raises(LocalProtocolError):
        make_seckey_answer(KEY, NONCE, DIGEST, SeckeyForm.PBKDF2_HMAC_SHA1, iterations=0)


def test_non_ascii_key_pbkdf2_password() -> None:
    """Admin capture #22: UTF-8 of the key bytes read as Latin-1; other forms raw."""
    key = "sécret-ü".encode()
    answer = make_seckey_answer(
        key, NONCE, DIGEST, SeckeyForm.PBKDF2_HMAC_SHA1, salt=b"s" * 16, iterations=5
    )
    password = key.decode("latin-1").encode("utf-8")
    import hmac

    dk = hashlib.pbkdf2_hmac("sha1", password, b"s" * 16, 5, 20)
    assert answer.endswith(hmac.new(dk, NONCE + DIGEST, hashlib.sha1).digest())
    hmac_answer = make_seckey_answer(key, NONCE, DIGEST, SeckeyForm.HMAC_SHA256)
    assert hmac_answer[1:] == hmac.new(key, NONCE + DIGEST, hashlib.sha256).digest()


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (b"\x07" + bytes(20), "unknown secret key answer form 0x07"),
        (b"\x02" + bytes(19), "truncated SHA1 answer"),
        (b"\x02" + bytes(21), "1 trailing bytes after the SHA1 answer"),
        (b"", "truncated secret key answer form"),
        (_pbkdf2_answer(10)[:3], "truncated PBKDF2 salt length"),
        (_pbkdf2_answer(10)[:22], "truncated PBKDF2 iterations"),
        (_pbkdf2_answer(10)[:26], "truncated PBKDF2 key length"),
        (_pbkdf2_answer(10)[:40], "truncated PBKDF2 MAC"),
        (_pbkdf2_answer(10)[:-24] + bytes(4), "PBKDF2 MAC is 0 bytes"),
    ],
)
def test_malformed_answers_name_the_field(response: bytes, message: str) -> None:
    with pytest.raises(RemoteProtocolError, match=message.replace("(", r"\(")):
        parse_seckey_answer(response)
    assert check_seckey_answer(KEY, NONCE, DIGEST, response) is None


# --- public-key answers ---------------------------------------------------------------


@pytest.fixture(scope="module")
def private_keys() -> list[rsa.RSAPrivateKey | dsa.DSAPrivateKey | ec.EllipticCurvePrivateKey]:
    return [
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        dsa.generate_private_key(key_size=2048),
        ec.generate_private_key(ec.SECP256R1()),
    ]


def _answer(name: str, signature: bytes) -> bytes:
    w = Writer()
    w.utf8(name)
    w.blob(signature)
    return w.getvalue()


def test_pubkey_answers_every_key_type(
    private_keys: list[rsa.RSAPrivateKey | dsa.DSAPrivateKey | ec.EllipticCurvePrivateKey],
) -> None:
    for key in private_keys:
        public = key.public_key()
        for name in ("SHA-256", "SHA1"):
            answer = make_pubkey_answer(key, NONCE, DIGEST, name)
            assert answer[4:][: len(name)] == name.encode()
            assert check_pubkey_answer(public, NONCE, DIGEST, answer)
            assert not check_pubkey_answer(public, NONCE, DIGEST[:-1] + b"x", answer)
            assert not check_pubkey_answer(public, NONCE, DIGEST, answer + b"\0")
        signature = make_pubkey_answer(key, NONCE, DIGEST)[4 + 7 + 4 :]
        for alias in ("SHA256",):
            assert check_pubkey_answer(public, NONCE, DIGEST, _answer(alias, signature))
        assert not check_pubkey_answer(public, NONCE, DIGEST, _answer("SHA-512", signature))
        sha1_sig = make_pubkey_answer(key, NONCE, DIGEST, "SHA1")[4 + 4 + 4 :]
        assert check_pubkey_answer(public, NONCE, DIGEST, _answer("SHA-1", sha1_sig))
    with pytest.raises(LocalProtocolError):
        make_pubkey_answer(private_keys[0], NONCE, DIGEST, "MD5")


def test_pubkey_answer_refusals(
    private_keys: list[rsa.RSAPrivateKey | dsa.DSAPrivateKey | ec.EllipticCurvePrivateKey],
) -> None:
    public = private_keys[0].public_key()
    for garbage in (b"", b"\0\0\0\x07SHA-256", b"\xff" * 12, struct.pack(">I", 99) + b"x"):
        assert not check_pubkey_answer(public, NONCE, DIGEST, garbage)
    other = ed25519.Ed25519PrivateKey.generate()
    answer = make_pubkey_answer(private_keys[0], NONCE, DIGEST)
    assert not check_pubkey_answer(other.public_key(), NONCE, DIGEST, answer)
    assert not check_pubkey_answer(private_keys[2].public_key(), NONCE, DIGEST, answer)


# --- Diffie-Hellman -------------------------------------------------------------------

GROUP14_P = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E"
    "3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF"
    "5CB6F406B7EDEE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D3"
    "9A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804F1746C08"
    "CA18217C32905E462E36CE3BE39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF69558171839"
    "95497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF",
    16,
)


@pytest.mark.parametrize("p", [GROUP2_P, GROUP14_P], ids=["group2", "group14"])
def test_dh_agreement(p: int) -> None:
    x1, y1 = dh_keypair(p, 2)
    x2, y2 = dh_keypair(p, 2)
    check_dh_group(DHPublicKey(y1, p, 2))
    key = dh_session_key(x1, y2, p)
    assert key == dh_session_key(x2, y1, p) and len(key) == 32
    assert x1 != x2 and 2 <= x1 <= p - 2


def test_dh_session_key_strips_leading_zeros() -> None:
    y = int.from_bytes(bytes(3) + bytes(range(1, 60)), "big")
    assert dh_session_key(1, y, GROUP2_P) == bytes(range(1, 33))


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (DHPublicKey(5, (1 << 511) + 1, 2), "512 bits is outside 1024..2048"),
        (DHPublicKey(5, (1 << 2048) + 1, 2), "2049 bits"),
        (DHPublicKey(5, (1 << 4095) + 1, 2), "4096 bits"),
        (DHPublicKey(5, -GROUP2_P, 2), "0 bits"),
        (DHPublicKey(5, GROUP2_P, 1), "DH g is outside"),
        (DHPublicKey(5, GROUP2_P, GROUP2_P - 1), "DH g is outside"),
        (DHPublicKey(1, GROUP2_P, 2), "DH y is outside"),
        (DHPublicKey(GROUP2_P - 1, GROUP2_P, 2), "DH y is outside"),
        (DHPublicKey(-5, GROUP2_P, 2), "DH y is outside"),
    ],
)
def test_dh_group_checks(key: DHPublicKey, message: str) -> None:
    with pytest.raises(RemoteProtocolError, match=message):
        check_dh_group(key)


def test_dh_group_bounds_are_settable() -> None:
    check_dh_group(DHPublicKey(5, GROUP14_P, 2), min_bits=2048, max_bits=2048)
    with pytest.raises(RemoteProtocolError):
        check_dh_group(DHPublicKey(5, GROUP2_P, 2), min_bits=2048)


# --- HS_MAC ---------------------------------------------------------------------------

SESSION_KEY = bytes(range(32))


def in_session(version: tuple[int, int], suggested: tuple[int, int] | None = None) -> Message:
    s = suggested or version
    env = Envelope(*version, suggested_major=s[0], suggested_minor=s[1], session_id=9)
    return replace(request(), envelope=replace(env, request_id=0x77))


@pytest.mark.parametrize("version", [(2, 11), (2, 8), (2, 7)])
def test_mac_binds_ids_and_counter(version: tuple[int, int]) -> None:
    msg = decode(encode(mac_message(in_session(version), SESSION_KEY, 3)))
    cred = msg.credential
    assert cred is not None and (cred.type, cred.signer_handle, cred.signer_index) == (
        "HS_MAC",
        "",
        3,
    )
    assert cred.digest_algorithm == "HMAC-SHA256" and len(cred.signature) == 32
    assert check_mac(msg, SESSION_KEY)
    assert not check_mac(msg, bytes(32))
    other = replace(cred, signer_index=4)
    assert not check_mac(replace(msg, credential=other), SESSION_KEY)
    for env in (replace(msg.envelope, request_id=0x78), replace(msg.envelope, session_id=10)):
        assert not check_mac(decode(encode(replace(msg, envelope=env))), SESSION_KEY)


@pytest.mark.parametrize("version", [(2, 6), (2, 5)])
def test_legacy_mac(version: tuple[int, int]) -> None:
    """The 2.5/2.6 form: SHA-1 over key[0:4] | header+body | key | zeros; it binds
    neither the counter nor the ids (admin capture #5 note)."""
    msg = decode(encode(mac_message(in_session(version), SESSION_KEY, 3)))
    cred = msg.credential
    assert cred is not None and cred.digest_algorithm == "SHA1"
    hb = encode(msg)[20 : 20 + 24 + len(msg.body_bytes)]
    buffer = SESSION_KEY[:4] + hb + SESSION_KEY + bytes(42)
    assert cred.signature == hashlib.sha1(buffer).digest()
    assert check_mac(msg, SESSION_KEY)
    assert check_mac(replace(msg, credential=replace(cred, signer_index=4)), SESSION_KEY)
    renamed = Credential.make("HS_MAC", "HMAC-SHA256", cred.signature, signer_index=3)
    assert not check_mac(replace(msg, credential=renamed), SESSION_KEY)


def test_mac_refusals() -> None:
    with pytest.raises(LocalProtocolError, match=r"no HS_MAC is defined at version 2\.4"):
        mac_message(in_session((2, 4)), SESSION_KEY, 1)
    with pytest.raises(LocalProtocolError):
        mac_message(in_session((2, 11)), SESSION_KEY, 1 << 32)
    msg = mac_message(in_session((2, 11)), SESSION_KEY, 1)
    assert not check_mac(in_session((2, 11)), SESSION_KEY)  # no credential
    assert not check_mac(replace(msg, envelope=replace(msg.envelope, minor=4)), SESSION_KEY)
    assert msg.credential is not None
    signed = replace(msg.credential, type="HS_SIGNED")
    assert not check_mac(replace(msg, credential=signed), SESSION_KEY)
    broken = replace(msg.credential, section=b"\0\0")
    assert not check_mac(replace(msg, credential=broken), SESSION_KEY)


def test_mac_follows_the_message_version_not_the_suggestion() -> None:
    """Admin capture #5: a request at envelope 2.11 suggesting 2.6 is MACed with
    HMAC-SHA256."""
    msg = mac_message(in_session((2, 11), (2, 6)), SESSION_KEY, 1)
    assert msg.credential is not None and msg.credential.digest_algorithm == "HMAC-SHA256"


# --- encryption -----------------------------------------------------------------------


@SETTINGS
@given(st.binary(max_size=200), st.binary(min_size=16, max_size=16))
def test_encryption_roundtrip(data: bytes, iv: bytes) -> None:
    plain = encode(replace(request(), body=ResolutionRequest(data.hex())))
    wire = encrypt_message(plain, SESSION_KEY, iv)
    env = Envelope.from_wire(wire)
    assert EnvelopeFlag.ENCRYPTED in env.flags and env.length == len(wire) - 20
    assert (len(wire) - 20) % 16 == 0 and wire[20:36] == iv
    assert decrypt_message(wire, SESSION_KEY) == plain
    assert decode(decrypt_message(wire, SESSION_KEY)).body == ResolutionRequest(data.hex())


def test_decryption_errors_name_the_problem() -> None:
    plain = encode(request())
    wire = encrypt_message(plain, SESSION_KEY, bytes(16))
    with pytest.raises(LocalProtocolError, match="not encrypted"):
        decrypt_message(plain, SESSION_KEY)
    with pytest.raises(RemoteProtocolError, match="envelope announces"):
        decrypt_message(wire[:-1], SESSION_KEY)
    short = wire[:16] + struct.pack(">I", 24) + wire[20:44]
    with pytest.raises(RemoteProtocolError, match="not an IV and whole AES blocks"):
        decrypt_message(short, SESSION_KEY)
    # Flip the last byte of the IV's partner block so the padding is wrong.
    last = bytearray(wire)
    last[-17] ^= 0xFF
    with pytest.raises(RemoteProtocolError, match="padding is invalid"):
        decrypt_message(bytes(last), SESSION_KEY)
    with pytest.raises(LocalProtocolError, match="IV"):
        encrypt_message(plain, SESSION_KEY, bytes(15))
    with pytest.raises(LocalProtocolError, match="session key"):
        encrypt_message(plain, bytes(8), bytes(16))
    with pytest.raises(RemoteProtocolError) as e:
        decode(wire)
    assert e.value.response_code == ResponseCode.OPERATION_NOT_SUPPORTED


def test_tiny_plaintext_is_refused() -> None:
    env = Envelope(session_id=1, request_id=2).to_wire()
    wire = encrypt_message(env + os.urandom(10), SESSION_KEY, bytes(16))
    with pytest.raises(RemoteProtocolError, match="has no header"):
        decrypt_message(wire, SESSION_KEY)
