"""Compact JWS: base64url, deterministic serialisation, ES256/RS256/EdDSA round trips,
algorithm confusion, and "parsing garbage only ever raises SignatureError"."""

from __future__ import annotations

import base64
import json
from functools import cache

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.codes import ResponseCode
from protocol.errors import LocalProtocolError, ProtocolError
from protocol.jose import (
    Jws,
    SignatureError,
    SigningKey,
    b64url_decode,
    b64url_encode,
    canonical_json,
    jws_parse,
    jws_sign,
    jws_verify,
)
from protocol.keys import PublicKey

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ALGS = ("ES256", "RS256", "EdDSA")


@cache
def signing_key(alg: str) -> SigningKey:
    if alg == "ES256":
        return SigningKey.from_private_key(ec.generate_private_key(ec.SECP256R1()))
    if alg == "RS256":
        return SigningKey.from_private_key(rsa.generate_private_key(65537, 2048))
    return SigningKey.from_private_key(ed25519.Ed25519PrivateKey.generate())


def other_public(alg: str) -> PublicKey:
    """A different key of the same type."""
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1()).public_key()
    if alg == "RS256":
        return rsa.generate_private_key(65537, 2048).public_key()
    return ed25519.Ed25519PrivateKey.generate().public_key()


def forge(header: dict[str, object], payload: dict[str, object], signature: bytes) -> str:
    return ".".join(
        (
            b64url_encode(json.dumps(header).encode()),
            b64url_encode(json.dumps(payload).encode()),
            b64url_encode(signature),
        )
    )


# --- base64url --------------------------------------------------------------------------


@given(st.binary(max_size=200))
def test_b64url_round_trip_without_padding(data: bytes) -> None:
    text = b64url_encode(data)
    assert "=" not in text and "+" not in text and "/" not in text
    assert b64url_decode(text) == data


@pytest.mark.parametrize("text", ["a", "ab==", "a+b/", "ab cd", "abc=", "é"])
def test_b64url_decode_refuses_non_base64url(text: str) -> None:
    with pytest.raises(SignatureError):
        b64url_decode(text)


# --- keys -------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ALGS)
def test_alg_inferred_from_key(alg: str) -> None:
    assert signing_key(alg).alg == alg


def test_unsupported_curve_and_mismatched_alg_refused() -> None:
    with pytest.raises(LocalProtocolError):
        SigningKey.from_private_key(ec.generate_private_key(ec.SECP384R1()))
    with pytest.raises(LocalProtocolError):
        SigningKey.from_private_key(signing_key("ES256").private_key, "RS256")


# --- sign / parse / verify ----------------------------------------------------------------


@pytest.mark.parametrize("alg", ALGS)
def test_round_trip(alg: str) -> None:
    key = signing_key(alg)
    payload = {"sub": "88.118.2/ROLL-0001", "n": 1, "list": [1, "ä"]}
    jws = jws_parse(jws_sign(payload, key))
    assert jws.header == {"alg": alg}
    assert jws.payload == payload
    assert jws_verify(jws, key.public_key)
    assert not jws_verify(jws, other_public(alg))


def test_es256_signature_is_raw_r_s() -> None:
    jws = jws_parse(jws_sign({"a": 1}, signing_key("ES256")))
    assert len(jws.signature) == 64  # JOSE r||s, not DER


def test_kid_and_header_extra() -> None:
    key = SigningKey.from_private_key(signing_key("EdDSA").private_key, kid="node-1")
    jws = jws_parse(jws_sign({}, key, {"typ": "JWT"}))
    assert jws.header == {"alg": "EdDSA", "kid": "node-1", "typ": "JWT"}
    with pytest.raises(LocalProtocolError):
        jws_sign({}, key, {"alg": "none"})


def test_serialisation_is_deterministic() -> None:
    assert canonical_json({"b": 1, "a": {"d": [1, 2], "c": "x y"}}) == (
        b'{"a":{"c":"x y","d":[1,2]},"b":1}'
    )
    key = signing_key("EdDSA")  # Ed25519 signatures are deterministic too
    one = jws_sign({"iss": "1:x", "sub": "y", "exp": 5}, key)
    two = jws_sign({"exp": 5, "sub": "y", "iss": "1:x"}, key)
    assert one == two
    head, body, _ = one.split(".")
    assert b64url_decode(head) == b'{"alg":"EdDSA"}'
    assert b64url_decode(body) == b'{"exp":5,"iss":"1:x","sub":"y"}'


@pytest.mark.parametrize("alg", ALGS)
def test_tampered_payload_does_not_verify(alg: str) -> None:
    key = signing_key(alg)
    head, _, sig = jws_sign({"sub": "88.118.2/A"}, key).split(".")
    body = b64url_encode(b'{"sub":"88.118.2/B"}')
    assert not jws_verify(jws_parse(f"{head}.{body}.{sig}"), key.public_key)


# --- algorithm confusion -------------------------------------------------------------------


@pytest.mark.parametrize("claimed", ["RS256", "ES256", "EdDSA", "PS256", "ES384", "HS256"])
@pytest.mark.parametrize("alg", ALGS)
def test_header_alg_must_fit_the_key(alg: str, claimed: str) -> None:
    """Relabel a valid signature's alg: only the true alg verifies under the key."""
    key = signing_key(alg)
    token = jws_sign({"sub": "x"}, key)
    _, body, sig = token.split(".")
    head = b64url_encode(canonical_json({"alg": claimed}))
    relabelled = jws_parse(f"{head}.{body}.{sig}")
    # The header is signed: relabelling changes the signing input.
    assert jws_verify(relabelled, key.public_key) == (claimed == alg)
    # Even with a matching signing input, a key of another type never verifies.
    original = jws_parse(token)
    confused = Jws({"alg": claimed}, original.payload, original.signing_input, original.signature)
    assert jws_verify(confused, key.public_key) == (claimed == alg)


@pytest.mark.parametrize("alg", ALGS)
def test_alg_none_never_verifies(alg: str) -> None:
    token = forge({"alg": "none"}, {"sub": "x"}, b"")
    assert not jws_verify(jws_parse(token), signing_key(alg).public_key)


def test_es256_on_another_curve_is_refused() -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    key = signing_key("ES256")
    jws = jws_parse(jws_sign({"a": 1}, key))
    assert not jws_verify(jws, p384.public_key())


def test_ds256_verifies_reference_dsa_signatures() -> None:
    """The Handle.Net 9 reference signs DSA keys as DS256 with a DER signature."""
    private = dsa.generate_private_key(1024)
    head = b64url_encode(b'{"alg":"DS256"}')
    body = b64url_encode(b'{"sub":"0.NA/88"}')
    sig = private.sign(f"{head}.{body}".encode(), hashes.SHA256())
    jws = jws_parse(f"{head}.{body}.{b64url_encode(sig)}")
    assert jws_verify(jws, private.public_key())
    assert not jws_verify(jws, dsa.generate_private_key(1024).public_key())


# --- malformed input -----------------------------------------------------------------------

MALFORMED = [
    "",
    "abc",
    "a.b",
    "a.b.c.d",
    "..",
    "é.b.c",
    "eyJhbGciOiJFUzI1NiJ9",
    b64url_encode(b"[1]") + "." + b64url_encode(b"{}") + ".",
    b64url_encode(b'{"typ":"JWT"}') + "." + b64url_encode(b"{}") + ".",
    b64url_encode(b'{"alg":""}') + "." + b64url_encode(b"{}") + ".",
    b64url_encode(b'{"alg":7}') + "." + b64url_encode(b"{}") + ".",
    b64url_encode(b'{"alg":"ES256"}') + "." + b64url_encode(b"[]") + ".",
    b64url_encode(b'{"alg":"ES256"}') + "." + b64url_encode(b"{bad json") + ".",
    b64url_encode(b'{"alg":"ES256","crit":["b64"]}') + "." + b64url_encode(b"{}") + ".",
    b64url_encode(b'{"alg":"ES256"}') + "." + b64url_encode(b"{}") + ".a",
    b64url_encode(b'{"alg":"ES256"}') + "=." + b64url_encode(b"{}") + ".",
    "x" * (1 << 21),
]


@pytest.mark.parametrize("token", MALFORMED, ids=range(len(MALFORMED)))
def test_malformed_tokens_raise_signature_error(token: str) -> None:
    with pytest.raises(SignatureError) as info:
        jws_parse(token)
    assert isinstance(info.value, ProtocolError)
    assert info.value.response_code == ResponseCode.INVALID_VALUE


def test_non_ascii_bytes_refused() -> None:
    with pytest.raises(SignatureError):
        jws_parse(b"\xff.\xfe.\xfd")


def _parse_or_signature_error(token: str | bytes) -> None:
    try:
        jws = jws_parse(token)
    except SignatureError:
        return
    assert isinstance(jws.header, dict) and isinstance(jws.payload, dict)
    assert jws_verify(jws, signing_key("EdDSA").public_key) in (True, False)


@SETTINGS
@given(st.text(max_size=300))
def test_arbitrary_text_only_raises_signature_error(text: str) -> None:
    _parse_or_signature_error(text)


@SETTINGS
@given(st.binary(max_size=300))
def test_arbitrary_bytes_only_raise_signature_error(data: bytes) -> None:
    _parse_or_signature_error(data)


json_scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=10)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)


@SETTINGS
@given(
    st.lists(
        json_values.map(lambda v: json.dumps(v).encode()) | st.binary(max_size=30),
        min_size=3,
        max_size=3,
    ),
)
def test_structured_garbage_only_raises_signature_error(parts: list[bytes]) -> None:
    """Each part valid base64url of JSON or junk: closer to real tokens than random text."""
    _parse_or_signature_error(
        ".".join(base64.urlsafe_b64encode(p).decode().rstrip("=") for p in parts)
    )
