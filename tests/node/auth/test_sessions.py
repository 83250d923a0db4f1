"""Units of session authentication without a node: the ``Authorization: Handle`` parser,
the session store on a stepped clock, HS_PUBKEY forms and signature forms, subjects of
client certificates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID

from node.auth import Identity, SessionLimitReached, SessionStore
from node.auth.clientcert import subject_identity
from node.auth.handleauth import decode_b64, parse_admin_id, parse_handle_authorization
from node.auth.identity import MalformedCredentials
from node.auth.pubkey import hash_for_alg, load_public_key, same_public_key, verify_signature
from node.auth.sessions import SourceLimitReached
from protocol.errors import ValueFormatError
from protocol.keys import encode_public_key, public_key_to_jwk
from tests.node.challenge_support import new_key, sign
from tests.node.pki_support import Pki

ADMIN = Identity("88.118.2/ADMIN", 300, "basic")


def test_header_forms() -> None:
    h = parse_handle_authorization(
        'Handle version="0", sessionId=abc,CNONCE="a\\"b" , id="300%3A88.118%2FADMIN+x", '
        'type=HS_PUBKEY, alg="SHA256", signature="c2ln", unknown="kept, ignored",'
    )
    assert (h.version, h.session_id, h.get("cnonce"), h.get("type")) == (
        "0",
        "abc",
        'a"b',
        "HS_PUBKEY",
    )
    assert h.get("id") == "300:88.118/ADMIN+x"  # percent-decoded, '+' kept (the reference's rule)
    assert h.authenticating and h.missing_answer_fields() == [] and not h.client_cert
    assert parse_handle_authorization('handle clientCert="TRUE"').client_cert
    assert not parse_handle_authorization('Handle sessionId="s"').authenticating
    for bad in (
        "Handle",
        "Handle   ",
        'Handle a="b" c="d"',
        "Handle a=",
        'Handle ="x"',
        'Handle a="unterminated',
        'Handle id="%FF"',
    ):
        with pytest.raises(MalformedCredentials):
            parse_handle_authorization(bad)


def test_admin_ids_and_base64() -> None:
    assert parse_admin_id("300:88.118/ADMIN") == (300, "88.118/ADMIN")
    assert parse_admin_id("88.118/ADMIN") == (0, "88.118/ADMIN")
    with pytest.raises(MalformedCredentials):
        parse_admin_id("300:")
    assert decode_b64("AQI", "x", 10) == b"\x01\x02" == decode_b64("AQI=", "x", 10)
    assert decode_b64("-_8=", "x", 10) == decode_b64("+/8=", "x", 10)  # URL-safe too
    for bad, limit in (("!!", 10), ("", 10), ("A" * 100, 10)):
        with pytest.raises(MalformedCredentials):
            decode_b64(bad, "x", limit)


def test_store_expiry_and_touch() -> None:
    store = SessionStore(10, idle_timeout_s=100)
    s = store.create(now=0)
    assert len(s.nonce) == 16 and store.get(s.id, now=99) is s  # touched at 99
    assert store.get(s.id, now=198) is s
    assert store.get(s.id, now=298) is None and len(store) == 0  # idle for 100 s: gone
    assert store.get("nope", now=0) is None


def test_store_limit_keeps_authenticated_sessions() -> None:
    store = SessionStore(2, idle_timeout_s=100)
    a, b = store.create(0), store.create(1)
    store.authenticate(a, ADMIN, now=2)
    assert (
        a.identity is not None
        and a.identity.scheme == "session"
        and a.identity.actor == "300:88.118.2/ADMIN"
    )
    c = store.create(3)  # full: b (unauthenticated) goes, a stays
    assert store.get(b.id, 3) is None and store.get(a.id, 3) is a
    store.authenticate(c, ADMIN, now=4)
    with pytest.raises(SessionLimitReached):
        store.create(5)
    assert store.create(104.5) is not None  # a and c idle since 3/4: expired, room again
    assert store.delete(c.id) is False and store.counts() == (1, 0)


def test_store_pending_sessions_per_source() -> None:
    """One source holds at most its share of unauthenticated sessions; authenticating,
    deleting, expiring or evicting one gives its place back; exempt networks and
    callers without an address are not counted."""
    store = SessionStore(100, idle_timeout_s=100, exempt=["127.0.0.0/8"])
    assert store.per_source_pending == 16 == SessionStore(1600, 1).per_source_pending
    assert SessionStore(10_000, 1).per_source_pending == 100
    mine = [store.create(0, "203.0.113.7") for _ in range(16)]
    with pytest.raises(SourceLimitReached, match=r"203\.0\.113\.7 holds 16"):
        store.create(0, "203.0.113.7")
    other = store.create(0, "203.0.113.8")  # another source is not held back
    assert store.create(0, "127.0.0.1") and store.create(0, None)
    store.authenticate(mine[0], ADMIN, now=1)
    store.create(1, "203.0.113.7")  # the authenticated one's place
    store.delete(mine[1].id)
    store.create(1, "203.0.113.7")  # the deleted one's place
    with pytest.raises(SourceLimitReached):
        store.create(1, "203.0.113.7")
    assert store.get(other.id, 150) is None  # idle for 150 s: expired, all of them
    for _ in range(16):
        store.create(150, "203.0.113.7")
    with pytest.raises(SourceLimitReached):
        store.create(150, "203.0.113.7")
    v6 = [store.create(150, f"2001:db8:1:2::{n}") for n in range(16)]
    with pytest.raises(SourceLimitReached):
        store.create(150, "2001:db8:1:2:ffff::1")  # the same /64
    full = SessionStore(4, idle_timeout_s=100, per_source_pending=2)
    first = full.create(0, "198.51.100.1")
    for n in range(2, 5):
        full.create(0, f"198.51.100.{n}")
    full.create(0, "198.51.100.9")  # full: the oldest pending session makes room...
    assert full.get(first.id, 0) is None
    full.create(0, "198.51.100.1")  # ...and its source has its place back
    assert len(v6) == 16


def test_store_authenticate_after_delete_is_a_no_op() -> None:
    store = SessionStore(2, idle_timeout_s=100)
    s = store.create(0)
    assert store.delete(s.id)
    store.authenticate(s, ADMIN, now=1)
    assert store.get(s.id, 1) is None and len(store) == 0


@pytest.mark.parametrize("kind", ["rsa", "ec", "dsa"])
def test_key_forms_and_signatures(kind: str) -> None:
    key = new_key(kind)
    pub = key.public_key()
    forms = [
        json.dumps(public_key_to_jwk(pub)).encode(),
        pub.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    ]
    if kind != "ec":
        forms.append(encode_public_key(pub))  # Handle key format: RSA and DSA only
    message = b"n" * 16 + b"c" * 16
    for data in forms:
        loaded = load_public_key(data)
        assert same_public_key(loaded, pub)  # type: ignore[arg-type]
        for alg in ("SHA256", "SHA1"):
            h = hash_for_alg(alg)
            assert h is not None
            assert verify_signature(loaded, h, message, sign(key, alg, message))
            assert not verify_signature(loaded, h, message + b"x", sign(key, alg, message))
    if kind == "ec":
        h = hashes.SHA256()
        assert verify_signature(
            load_public_key(forms[0]), h, message, sign(key, "SHA256", message, raw_ec=True)
        )


def test_unusable_keys_and_algs() -> None:
    for data in (
        b"",
        b"{not json",
        b"-----BEGIN PUBLIC KEY-----\nxx\n",
        b"\x00" * 20000,
        b'{"kty":"RSA"}',
    ):
        with pytest.raises(ValueFormatError):
            load_public_key(data)
    assert hash_for_alg("md5") is None and hash_for_alg("sha-256") is not None
    ed = ed25519.Ed25519PrivateKey.generate()
    pub = load_public_key(json.dumps(public_key_to_jwk(ed.public_key())).encode())
    assert verify_signature(pub, hashes.SHA256(), b"m", ed.sign(b"m"))  # alg ignored: pure EdDSA


def test_certificate_subjects(tmp_path: Path) -> None:
    pki = Pki.create(tmp_path / "pki")
    key = new_key("ec")
    by_cn = x509.load_pem_x509_certificate(pki.client("300:88.118.2/ADMIN", key).read_bytes())
    by_uid = x509.load_pem_x509_certificate(
        pki.client("88.118.3/ADMIN", key, uid=True).read_bytes()
    )
    assert subject_identity(by_cn) == (300, "88.118.2/ADMIN")
    assert subject_identity(by_uid) == (0, "88.118.3/ADMIN")  # UID wins over CN and O
    only_o = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "301:88.118.5/ADMIN")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(only_o)
        .issuer_name(only_o)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(by_cn.not_valid_before_utc)
        .not_valid_after(by_cn.not_valid_after_utc)
    )
    assert subject_identity(builder.sign(key, hashes.SHA256())) == (
        301,
        "88.118.5/ADMIN",
    )  # O, last resort
