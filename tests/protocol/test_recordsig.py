"""Record signatures (docs/signing.md): digests, the signature index, signing, certificate chains,
permissions, and what verification reports for each way a record or chain can be wrong."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cache

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.certs import (
    CLOCK_SKEW_S,
    CertPerm,
    Perm,
    make_cert,
    parse_cert,
    self_signed_root,
)
from protocol.codes import TTLType
from protocol.errors import LocalProtocolError
from protocol.jose import (
    SignatureError,
    SigningKey,
    b64url_decode,
    b64url_encode,
    jws_parse,
    jws_sign,
)
from protocol.keys import PublicKey, public_key_to_jwk
from protocol.recordsig import (
    HS_SIGNATURE,
    sign_record,
    signature_index,
    value_digest,
    verify_record,
    with_signature,
)
from protocol.sigreport import Problem, ValueStatus, Verification
from protocol.valuecodec import value_to_wire
from protocol.values import HandleValue, Reference

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NOW = 1_767_225_600  # 2026-01-01T00:00:00Z
DAY = 86400
YEAR = 365 * DAY
HANDLE = "88.118.2/ROLL-0001"
NODE = "300:0.NA/88.118.2"  # the secondary node's signing identity
TOP = "300:0.NA/88"  # the top-level node, holder of the trust root
ALGS = ("ES256", "RS256", "EdDSA")


@cache
def key(name: str, alg: str = "ES256") -> SigningKey:
    """A fixed key per (name, alg) for the whole run."""
    if alg == "ES256":
        return SigningKey.from_private_key(ec.generate_private_key(ec.SECP256R1()))
    if alg == "RS256":
        return SigningKey.from_private_key(rsa.generate_private_key(65537, 2048))
    return SigningKey.from_private_key(ed25519.Ed25519PrivateKey.generate())


def record() -> list[HandleValue]:
    return [
        HandleValue(1, "URL", b"https://textile.example/roll/0001", timestamp=NOW - 50),
        HandleValue(2, "EMAIL", b"qa@textile.example", ttl=3600, timestamp=NOW - 40),
        HandleValue(3, "ROLL.WEIGHT", b"41.5kg", references=(Reference("88.118.2/LOT-7", 1),)),
        HandleValue(4, "SECRET", b"internal", permissions=0x0C),  # admin read/write only
        HandleValue(100, "HS_ADMIN", bytes(2) + b"\x00\x00\x00\x0b0.NA/88.118" + bytes(4)),
    ]


@dataclass(frozen=True)
class Deployment:
    """Top-level node's root key certifies the secondary node's key (docs/idis.md topology)."""

    node: SigningKey
    certs: dict[str, str]
    roots: tuple[PublicKey, ...]

    def sign(
        self, values: Sequence[HandleValue], handle: str = HANDLE, lifetime_s: int = 30 * DAY
    ) -> tuple[HandleValue, ...]:
        return with_signature(handle, values, self.node, NODE, now=NOW, lifetime_s=lifetime_s)

    def verify(
        self, values: Sequence[HandleValue], handle: str = HANDLE, now: int = NOW + 60
    ) -> Verification:
        return verify_record(handle, values, certs=self.certs, roots=self.roots, now=now)


def deployment(
    alg: str = "ES256",
    node_perms: Sequence[CertPerm] = (CertPerm("0.NA/88.118", Perm.DERIVED_PREFIXES),),
    cert_now: int = NOW,
    cert_lifetime_s: int = YEAR,
    root_key: SigningKey | None = None,
    trusted: Sequence[PublicKey] | None = None,
) -> Deployment:
    top = root_key or key("top", alg)
    node = key("node", alg)
    root = self_signed_root(top, TOP, [CertPerm("0.NA/88", Perm.DERIVED_PREFIXES)], NOW, 10 * YEAR)
    cert = make_cert(
        top, TOP, NODE, node.public_key, node_perms, now=cert_now, lifetime_s=cert_lifetime_s
    )
    roots = tuple(trusted) if trusted is not None else (key("top", alg).public_key,)
    return Deployment(node, {NODE: cert, TOP: root}, roots)


def status_of(result: Verification, index: int) -> ValueStatus:
    (check,) = [c for c in result.values if c.index == index]
    return check.status


# --- digests and the index rule -----------------------------------------------------------


def test_value_digest_skips_index_and_timestamp() -> None:
    v = record()[0]
    assert value_digest(v) == hashlib.sha256(value_to_wire(v)[8:]).digest()
    assert value_digest(replace(v, index=77, timestamp=12345)) == value_digest(v)
    for changed in (
        replace(v, ttl=60),
        replace(v, ttl_type=TTLType.ABSOLUTE),
        replace(v, permissions=0x0F),
        replace(v, type="URL.ALT"),
        replace(v, data=v.data + b"/"),
        replace(v, references=(Reference("88.118.2/X", 1),)),
    ):
        assert value_digest(changed) != value_digest(v)


@pytest.mark.parametrize(
    ("indexes", "expected"),
    [
        ((), 400),
        ((1, 2, 100), 400),
        ((400,), 401),
        ((399, 400, 401, 403), 402),
    ],
)
def test_signature_index_lowest_free_from_400(indexes: tuple[int, ...], expected: int) -> None:
    assert signature_index([HandleValue(i, "URL", b"x") for i in indexes]) == expected


def test_signature_index_reuses_existing_signature() -> None:
    values = [HandleValue(400, "URL", b"x"), HandleValue(405, "hs_signature", b"old")]
    assert signature_index(values) == 405


@given(st.sets(st.integers(0, 1000), max_size=30))
def test_signature_index_property(used: set[int]) -> None:
    index = signature_index([HandleValue(i, "URL", b"x") for i in used])
    assert index >= 400 and index not in used
    assert all(i in used for i in range(400, index))


# --- signing ------------------------------------------------------------------------------


def test_signature_value_and_payload_format() -> None:
    d = deployment()
    signed = d.sign(record())
    sig = signed[-1]
    assert (sig.index, sig.type, sig.permissions, sig.timestamp) == (400, HS_SIGNATURE, 0x0E, NOW)
    assert sig.ttl == 3600  # the shortest TTL among the covered values
    jws = jws_parse(sig.data)
    assert jws.header == {"alg": "ES256"}
    payload = jws.payload
    assert payload["iss"] == NODE and payload["sub"] == HANDLE
    assert (payload["iat"], payload["nbf"], payload["exp"]) == (
        NOW,
        NOW - CLOCK_SKEW_S,
        NOW + 30 * DAY,
    )
    assert "chain" not in payload  # the reference leaves a null chain out
    assert payload["digests"]["alg"] == "SHA-256"
    digests = payload["digests"]["digests"]
    public = [v for v in record() if v.public_read]
    assert [d["index"] for d in digests] == [v.index for v in public]  # not the SECRET at 4
    for entry, v in zip(digests, public, strict=True):
        # Standard base64 with padding, as the reference's commons-codec encodeBase64String.
        assert entry["digest"] == base64.b64encode(value_digest(v)).decode()
    # The payload is the canonical serialisation: sorted keys, no spaces.
    body = sig.data.split(b".")[1].decode()
    assert b64url_decode(body) == orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)


def test_with_signature_replaces_previous_signature_at_its_index() -> None:
    d = deployment()
    old = HandleValue(401, "HS_SIGNATURE", b"stale")
    signed = d.sign([*record(), old])
    signatures = [v for v in signed if v.type == HS_SIGNATURE]
    assert [v.index for v in signatures] == [401]
    assert signatures[0].data != b"stale"
    assert d.verify(signed).ok


def test_chain_claim_written() -> None:
    sig = sign_record(
        HANDLE,
        record(),
        key("node"),
        NODE,
        now=NOW,
        lifetime_s=DAY,
        chain=["0.NA/88.118.2", "0.NA/88"],
    )
    assert jws_parse(sig.data).payload["chain"] == ["0.NA/88.118.2", "0.NA/88"]


def test_oversized_signature_refused() -> None:
    values = [HandleValue(i, "URL", b"x") for i in range(1, 1001)]
    with pytest.raises(LocalProtocolError):
        sign_record(HANDLE, values, key("node"), NODE, now=NOW, lifetime_s=DAY)


# --- round trips -------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ALGS)
def test_round_trip(alg: str) -> None:
    d = deployment(alg)
    signed = d.sign(record())
    result = d.verify(signed)
    assert result.ok, result.render()
    assert result.signature_valid and result.root_reached and not result.problems
    assert result.covered == (1, 2, 3, 100)
    assert status_of(result, 4) == ValueStatus.NOT_PUBLIC
    assert status_of(result, 400) == ValueStatus.SIGNATURE
    assert [link.where for link in result.chain] == [
        "HS_SIGNATURE 400",
        f"certificate {NODE}",
        f"certificate {TOP}",
    ]
    assert result.signer == NODE


def test_embedded_default_self_signed_root() -> None:
    node = key("solo", "EdDSA")
    root = self_signed_root(
        node, NODE, [CertPerm("0.NA/88.118.2", Perm.HANDLES_UNDER_THIS_PREFIX)], NOW, YEAR
    )
    signed = with_signature(HANDLE, record(), node, NODE, now=NOW, lifetime_s=DAY)
    result = verify_record(HANDLE, signed, certs={NODE: root}, roots=[node.public_key], now=NOW)
    assert result.ok, result.render()
    assert result.chain[-1].verified_by == "itself (root)"


def test_signed_directly_by_a_root_key() -> None:
    """No certificate for the issuer, but the signature verifies under a configured root."""
    top = key("top")
    signed = with_signature(HANDLE, record(), top, TOP, now=NOW, lifetime_s=DAY)
    result = verify_record(
        HANDLE, signed, certs={}, roots=[key("other").public_key, top.public_key], now=NOW
    )
    assert result.ok, result.render()
    assert result.chain[-1].verified_by == "a trusted root key"


def test_certs_found_by_chain_entry_and_case_insensitive_prefix() -> None:
    d = deployment()
    values = with_signature(
        HANDLE, record(), d.node, NODE, now=NOW, lifetime_s=DAY, chain=["0.na/88.118.2", "0.NA/88"]
    )
    certs = {"0.NA/88.118.2": d.certs[NODE], "0.na/88": d.certs[TOP]}
    result = verify_record(HANDLE, values, certs=certs, roots=d.roots, now=NOW)
    assert result.ok, result.render()
    assert verify_record(
        "88.118.2/ROLL-0001".lower(), values, certs=certs, roots=d.roots, now=NOW
    ).ok


# --- tampering ----------------------------------------------------------------------------


def test_changed_data_is_mismatched_naming_index_and_type() -> None:
    d = deployment()
    signed = list(d.sign(record()))
    signed[1] = replace(signed[1], data=b"attacker@evil.example")
    result = d.verify(signed)
    assert not result.ok
    assert result.mismatched == (2,)
    (check,) = [c for c in result.values if c.status == ValueStatus.MISMATCHED]
    assert (check.index, check.type) == (2, "EMAIL")
    assert "value 2 EMAIL: mismatched" in result.render()


@SETTINGS
@given(st.lists(st.integers(0, 0xFFFFFFFF), min_size=5, max_size=5))
def test_touching_timestamps_keeps_it_valid(stamps: list[int]) -> None:
    d = deployment("EdDSA")
    signed = d.sign(record())
    touched = [replace(v, timestamp=t) for v, t in zip(signed, stamps, strict=False)] + list(
        signed[5:]
    )
    assert d.verify(touched).ok


def test_added_public_value_is_uncovered() -> None:
    d = deployment()
    signed = [*d.sign(record()), HandleValue(5, "URL", b"https://evil.example")]
    result = d.verify(signed)
    assert not result.ok
    assert result.uncovered == (5,)


def test_added_private_value_needs_no_cover() -> None:
    d = deployment()
    signed = [*d.sign(record()), HandleValue(5, "HS_SECKEY", b"pw", permissions=0x0C)]
    result = d.verify(signed)
    assert result.ok
    assert status_of(result, 5) == ValueStatus.NOT_PUBLIC


def test_removed_value_is_reported_missing() -> None:
    d = deployment()
    signed = [v for v in d.sign(record()) if v.index != 3]
    result = d.verify(signed)
    assert result.missing == (3,)
    assert result.ok  # a type-filtered resolution returns a subset: still authentic


def test_signature_moved_to_another_handle() -> None:
    d = deployment()
    signed = d.sign(record())
    result = d.verify(signed, handle="88.118.2/ROLL-0002")
    assert Problem.WRONG_HANDLE in result.reasons() and not result.ok


def test_unsigned_record() -> None:
    result = deployment().verify(record())
    assert result.reasons() == {Problem.UNSIGNED}
    assert result.uncovered == (1, 2, 3, 100)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not a jws",
        b"\xff\xfe",
        b"a.b.c",
        b64url_encode(b'{"alg":"ES256"}').encode() + b".e30.AA",
    ],
)
def test_malformed_signature_value(data: bytes) -> None:
    result = deployment().verify([*record(), HandleValue(400, HS_SIGNATURE, data)])
    assert result.reasons() == {Problem.MALFORMED}
    assert result.uncovered == (1, 2, 3, 100)


def test_alg_none_signature_rejected() -> None:
    d = deployment()
    signed = list(d.sign(record()))
    _, body, _ = signed[-1].data.decode().split(".")
    head = b64url_encode(b'{"alg":"none"}')
    signed[-1] = replace(signed[-1], data=f"{head}.{body}.".encode())
    result = d.verify(signed)
    assert not result.ok and not result.signature_valid
    assert Problem.BAD_SIGNATURE in result.reasons()


def test_one_good_signature_among_several_wins() -> None:
    d = deployment()
    signed = d.sign(record())
    junk = HandleValue(399, HS_SIGNATURE, b"junk")
    result = d.verify([*signed, junk])
    assert result.ok and result.signature_index == 400


# --- chain failures ------------------------------------------------------------------------


def test_expired_certificate() -> None:
    d = deployment(cert_now=NOW - 2 * YEAR, cert_lifetime_s=YEAR)
    result = d.verify(d.sign(record()))
    assert result.reasons() == {Problem.EXPIRED} and not result.ok
    assert result.problems[0].where == f"certificate {NODE}"
    assert result.covered == (1, 2, 3, 100)  # the digests themselves are fine


def test_certificate_not_yet_valid() -> None:
    d = deployment(cert_now=NOW + 10 * DAY)
    result = d.verify(d.sign(record()))
    assert result.reasons() == {Problem.NOT_YET_VALID}


def test_expired_signature() -> None:
    d = deployment()
    result = d.verify(d.sign(record(), lifetime_s=DAY), now=NOW + 2 * DAY)
    assert result.reasons() == {Problem.EXPIRED}
    assert result.problems[0].where == "HS_SIGNATURE 400"


def test_foreign_prefix_certificate_has_wrong_perms() -> None:
    """A key certified for 88.119 cannot sign 88.118.2/X."""
    d = deployment(node_perms=[CertPerm("0.NA/88.119", Perm.HANDLES_UNDER_THIS_PREFIX)])
    result = d.verify(d.sign(record()))
    assert result.reasons() == {Problem.WRONG_PERMS}
    assert result.signature_valid and result.root_reached and not result.ok
    assert "88.119" in result.problems[0].detail


def test_unknown_root() -> None:
    d = deployment(trusted=[key("someone else").public_key])
    result = d.verify(d.sign(record()))
    assert result.reasons() == {Problem.UNKNOWN_ROOT}
    assert not result.root_reached


def test_missing_certificate() -> None:
    d = deployment()
    result = verify_record(HANDLE, d.sign(record()), certs={}, roots=d.roots, now=NOW)
    assert result.reasons() == {Problem.MISSING_CERTIFICATE}
    assert not result.signature_valid


def test_certificate_for_another_key_gives_bad_signature() -> None:
    d = deployment()
    impostor = key("impostor")
    signed = with_signature(HANDLE, record(), impostor, NODE, now=NOW, lifetime_s=DAY)
    result = d.verify(signed)
    assert result.reasons() == {Problem.BAD_SIGNATURE}
    assert not result.signature_valid


def test_malformed_certificate() -> None:
    d = deployment()
    result = verify_record(
        HANDLE, d.sign(record()), certs={NODE: "garbage"}, roots=d.roots, now=NOW
    )
    assert result.reasons() == {Problem.MALFORMED}


def test_certificate_about_someone_else() -> None:
    d = deployment()
    certs = {NODE: d.certs[TOP], TOP: d.certs[TOP]}
    result = verify_record(HANDLE, d.sign(record()), certs=certs, roots=d.roots, now=NOW)
    assert result.reasons() == {Problem.MISSING_CERTIFICATE}


def test_certificate_loop() -> None:
    a, b = key("a"), key("b")
    perms = [CertPerm("", Perm.EVERYTHING)]
    certs = {
        "1:A/X": make_cert(b, "1:B/X", "1:A/X", a.public_key, perms, now=NOW, lifetime_s=DAY),
        "1:B/X": make_cert(a, "1:A/X", "1:B/X", b.public_key, perms, now=NOW, lifetime_s=DAY),
    }
    signed = with_signature(HANDLE, record(), a, "1:A/X", now=NOW, lifetime_s=DAY)
    result = verify_record(HANDLE, signed, certs=certs, roots=[key("top").public_key], now=NOW)
    assert Problem.MALFORMED in result.reasons() and not result.ok


def test_report_renders_and_serialises() -> None:
    d = deployment(node_perms=[CertPerm("0.NA/88.119", Perm.DERIVED_PREFIXES)])
    signed = [*d.sign(record()), HandleValue(6, "URL", b"x")]
    result = d.verify(signed)
    text = result.render()
    assert "NOT VALID" in text and "wrong perms" in text and "value 6 URL: uncovered" in text
    data = orjson.loads(orjson.dumps(result.to_json()))
    assert data["ok"] is False
    assert {
        "index": 6,
        "type": "URL",
        "status": "uncovered",
        "detail": "not in the signature",
    } in data["values"]
    assert data["problems"][0]["reason"] == "wrong perms"
    assert data["chain"][0]["where"] == "HS_SIGNATURE 400"


# --- certificates ------------------------------------------------------------------------


def test_certificate_format() -> None:
    node = key("node", "RS256")
    token = make_cert(
        key("top"),
        TOP,
        NODE,
        node.public_key,
        [CertPerm("0.NA/88.118", Perm.DERIVED_PREFIXES)],
        now=NOW,
        lifetime_s=DAY,
    )
    payload = jws_parse(token).payload
    assert payload["publicKey"] == public_key_to_jwk(node.public_key)
    assert payload["perms"] == [{"handle": "0.NA/88.118", "perm": "derivedPrefixes"}]
    assert (payload["iss"], payload["sub"]) == (TOP, NODE)
    cert = parse_cert(token)
    assert cert.subject == NODE and cert.issuer == TOP
    assert cert.perms == (CertPerm("0.NA/88.118", "derivedPrefixes"),)


@pytest.mark.parametrize(
    "payload",
    [
        {"iss": "1:a", "sub": "1:b"},
        {"iss": "1:a", "sub": "1:b", "publicKey": {"kty": "RSA"}},
        {"iss": "1:a", "sub": "1:b", "publicKey": "x"},
        {"iss": 1, "sub": "1:b", "publicKey": {}},
        {"iss": "1:a", "sub": "1:b", "exp": "soon", "publicKey": {}},
    ],
)
def test_parse_cert_malformed(payload: dict[str, object]) -> None:
    head = b64url_encode(b'{"alg":"ES256"}')
    with pytest.raises(SignatureError):
        parse_cert(f"{head}.{b64url_encode(orjson.dumps(payload))}.")


@SETTINGS
@given(st.binary(max_size=400), st.text(max_size=200))
def test_verify_never_raises_on_garbage(signature: bytes, cert: str) -> None:
    d = deployment("EdDSA")
    result = verify_record(
        HANDLE,
        [*record(), HandleValue(400, HS_SIGNATURE, signature)],
        certs={NODE: cert},
        roots=d.roots,
        now=NOW,
    )
    assert not result.ok


claim_values = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=12)
)
odd_claims = st.fixed_dictionaries(
    {},
    optional={
        "iss": st.sampled_from([NODE, TOP, "", "x"]) | claim_values,
        "sub": st.sampled_from([HANDLE, NODE]) | claim_values,
        "exp": claim_values,
        "nbf": claim_values,
        "chain": st.lists(st.sampled_from([NODE, TOP, "0.NA/88", ""]) | claim_values, max_size=4)
        | claim_values,
        "digests": st.fixed_dictionaries(
            {},
            optional={
                "alg": st.sampled_from(["SHA-256", "sha-256", "MD5"]) | claim_values,
                "digests": st.lists(
                    st.fixed_dictionaries(
                        {}, optional={"index": claim_values, "digest": claim_values}
                    )
                    | claim_values,
                    max_size=4,
                ),
            },
        )
        | claim_values,
    },
)


@SETTINGS
@given(odd_claims)
def test_verify_never_raises_on_validly_signed_odd_claims(claims: dict[str, object]) -> None:
    """Signed with the certified node key, so the walk goes past parsing into the chain."""
    d = deployment("EdDSA")
    token = jws_sign(claims, d.node).encode()
    result = d.verify([*record(), HandleValue(400, HS_SIGNATURE, token)])
    assert isinstance(result.ok, bool)
    assert isinstance(result.render(), str)
    orjson.dumps(result.to_json())
