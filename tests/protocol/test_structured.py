"""HS_ADMIN / HS_VLIST / HS_SITE codecs and the Handle key format, against the golden
captures of the reference server (tests/vectors/handle-golden.txt)."""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
from collections import Counter
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa
from hypothesis import given
from hypothesis import strategies as st

from protocol.codes import ALL_ADMIN_PERMS, AdminPerm
from protocol.errors import LocalProtocolError, ProtocolError, RemoteProtocolError, ValueFormatError
from protocol.keys import (
    decode_public_key,
    encode_public_key,
    public_key_from_jwk,
    public_key_to_jwk,
)
from protocol.structured import (
    AdminRef,
    HashOption,
    Interface,
    InterfaceProtocol,
    InterfaceType,
    ServerInfo,
    SiteInfo,
    decode_admin,
    decode_vlist,
    encode_admin,
    encode_vlist,
    handle_hash,
)
from protocol.valuecodec import decode_values
from protocol.values import Reference
from tests.protocol.golden import GOLDEN_ADMIN, reply_body, reply_value_bytes

# --- HS_SITE --------------------------------------------------------------------------


@pytest.mark.parametrize("entry", [13, 14])
def test_golden_site_info_round_trip(entry: int) -> None:
    body = reply_body(entry)
    assert len(body) == 349
    site = SiteInfo.from_wire(body)
    assert site.to_wire() == body
    # the "# decoded:" lines of the capture
    assert (site.data_version, site.major, site.minor, site.serial) == (1, 2, 10, 1)
    assert site.primary and not site.multi_primary
    assert site.hash_option == HashOption.BY_HANDLE and site.hash_filter == ""
    assert site.attributes == ()
    (server,) = site.servers
    assert server.server_id == 1
    assert server.address == bytes(12) + bytes([127, 0, 0, 1])
    assert server.ip == ipaddress.IPv4Address("127.0.0.1")
    assert server.interfaces == (
        Interface(InterfaceType.BOTH, InterfaceProtocol.TCP, 2651),
        Interface(InterfaceType.QUERY, InterfaceProtocol.UDP, 2651),
    )
    assert len(server.public_key) == 289
    assert server.find_interface(InterfaceProtocol.UDP) == server.interfaces[1]
    assert server.find_interface(InterfaceProtocol.UDP, admin=True) is None
    assert server.find_interface(InterfaceProtocol.TCP, admin=True) == server.interfaces[0]


@pytest.mark.parametrize("entry", [21, 22])
def test_golden_site_values_in_resolution_and_referral(entry: int) -> None:
    reference = SiteInfo.from_wire(reply_body(13))
    values = decode_values(reply_value_bytes(entry))
    sites = [v for v in values if v.type.startswith("HS_SITE")]
    assert [v.type for v in sites] == (
        ["HS_SITE", "HS_SITE.PREFIX"] if entry == 21 else ["HS_SITE.PREFIX"]
    )
    for v in sites:
        site = SiteInfo.from_wire(v.data)
        assert site == reference
        assert site.to_wire() == v.data
    if entry == 21:
        admin = decode_admin(next(v.data for v in values if v.type == "HS_ADMIN"))
        assert admin == AdminRef("0.NA/88.118", 200, 0xFFF)


def test_for_address_matches_reference_layout_and_ipv6() -> None:
    golden = SiteInfo.from_wire(reply_body(13)).servers[0]
    built = ServerInfo.for_address(1, "127.0.0.1", golden.public_key, golden.interfaces)
    assert built == golden

    v6 = ServerInfo.for_address(7, "2001:db8::2a", b"", [Interface(3, 1, 2641)])
    assert v6.address == ipaddress.IPv6Address("2001:db8::2a").packed
    assert v6.ip == ipaddress.IPv6Address("2001:db8::2a")
    site = SiteInfo(serial=9, servers=(v6,), attributes=(("desc", "IPv6 site"),), hash_filter="x")
    wire = site.to_wire()
    assert SiteInfo.from_wire(wire) == site
    assert SiteInfo.from_wire(memoryview(wire)) == site
    with pytest.raises(LocalProtocolError):
        ServerInfo.for_address(1, "not-an-ip", b"", [])


def test_site_encode_rejects_out_of_range_fields() -> None:
    server = ServerInfo.for_address(1, "10.0.0.1", b"", [Interface(2, 0, 70000)])
    with pytest.raises(LocalProtocolError, match="serial"):
        SiteInfo(serial=0x10000, servers=(server,)).to_wire()
    with pytest.raises(LocalProtocolError, match="address"):
        SiteInfo(serial=1, servers=(ServerInfo(1, b"\x01" * 4, b"", ()),)).to_wire()
    with pytest.raises(LocalProtocolError, match="port"):
        bad = ServerInfo.for_address(1, "10.0.0.1", b"", [Interface(2, 0, 1 << 32)])
        SiteInfo(serial=1, servers=(bad,)).to_wire()


def test_site_decode_rejects_trailing_and_truncated_bytes() -> None:
    body = reply_body(13)
    with pytest.raises(RemoteProtocolError, match="trailing"):
        SiteInfo.from_wire(body + b"\0")
    for cut in range(len(body)):
        with pytest.raises(RemoteProtocolError):
            SiteInfo.from_wire(body[:cut])


# --- server selection -----------------------------------------------------------------


def _site(n: int, option: HashOption) -> SiteInfo:
    servers = tuple(
        ServerInfo.for_address(i + 1, f"10.0.0.{i + 1}", b"", [Interface(3, 1, 2641)])
        for i in range(n)
    )
    return SiteInfo(serial=1, servers=servers, hash_option=option)


def _java_hash(part: bytes) -> int:
    """Independent restatement: MD5, last 4 bytes as a signed int, absolute value."""
    signed = int.from_bytes(hashlib.md5(part).digest()[12:], "big", signed=True)
    return abs(signed)


def test_handle_hash_known_answers() -> None:
    handle = "88.118.2/fab-2026-000123"
    assert handle_hash(handle, HashOption.BY_HANDLE) == _java_hash(b"88.118.2/FAB-2026-000123")
    assert handle_hash(handle, HashOption.BY_PREFIX) == _java_hash(b"88.118.2")
    assert handle_hash(handle, HashOption.BY_SUFFIX) == _java_hash(b"FAB-2026-000123")
    # suffix keeps everything after the first slash; a slashless handle hashes as "0.NA"
    assert handle_hash("1/a/b", HashOption.BY_SUFFIX) == _java_hash(b"A/B")
    assert handle_hash("88.118", HashOption.BY_PREFIX) == _java_hash(b"0.NA")
    assert handle_hash("88.118", HashOption.BY_SUFFIX) == _java_hash(b"88.118")
    # only ASCII a-z are folded, as the reference's byte-wise upperCase
    assert handle_hash("88.118.2/été", 2) == _java_hash("88.118.2/éTé".encode())
    with pytest.raises(ValueFormatError, match="hash option"):
        handle_hash(handle, 7)


@pytest.mark.parametrize("option", list(HashOption))
def test_server_for_is_deterministic_and_spreads(option: HashOption) -> None:
    site = _site(4, option)
    handles = [f"88.118.{i % 7}/item-{i}" for i in range(2000)]
    picks = [site.server_for(h) for h in handles]
    assert picks == [site.server_for(h) for h in handles]
    assert [site.server_for(h.upper()) for h in handles] == picks  # ASCII case-insensitive
    counts = Counter(p.server_id for p in picks)
    if option == HashOption.BY_PREFIX:  # 7 distinct prefixes: one server each
        by_prefix = {h.split("/")[0]: p for h, p in zip(handles, picks, strict=True)}
        assert all(site.server_for(f"{pfx}/other") == srv for pfx, srv in by_prefix.items())
        assert len(counts) >= 2
    else:
        assert set(counts) == {1, 2, 3, 4}
        assert min(counts.values()) > 2000 / 4 * 0.8
    if option == HashOption.BY_SUFFIX:
        assert site.server_for("1.2/same") == site.server_for("3.4/SAME")


def test_server_for_single_server_and_empty_site() -> None:
    site = _site(1, HashOption.BY_HANDLE)
    assert site.server_for("anything/at-all") is site.servers[0]
    with pytest.raises(ValueFormatError):
        SiteInfo(serial=1, servers=()).server_for("a/b")


# --- HS_ADMIN / HS_VLIST --------------------------------------------------------------


def test_golden_admin_round_trip() -> None:
    admin = decode_admin(GOLDEN_ADMIN)
    assert admin == AdminRef("88.118/ADMIN", 300, 0xFFF)
    assert AdminPerm(admin.permissions) == ALL_ADMIN_PERMS
    assert encode_admin(admin) == GOLDEN_ADMIN


def test_admin_legacy_length_and_errors() -> None:
    legacy = GOLDEN_ADMIN + b"\0\0"  # records written by servers up to 7.3
    admin = decode_admin(legacy)
    assert admin.legacy_byte_length and encode_admin(admin) == legacy
    with pytest.raises(RemoteProtocolError):
        decode_admin(GOLDEN_ADMIN + b"\0\1")
    with pytest.raises(RemoteProtocolError, match="trailing"):
        decode_admin(GOLDEN_ADMIN + b"\0")
    with pytest.raises(LocalProtocolError):
        encode_admin(AdminRef("x/y", 1, 0x10000))
    with pytest.raises(LocalProtocolError):
        encode_admin(AdminRef("x/\ud800", 1, 1))


def test_golden_vlist_round_trip() -> None:
    values = decode_values(reply_value_bytes(8))
    data = next(v.data for v in values if v.type == "HS_VLIST")
    refs = decode_vlist(data)
    assert refs == (Reference("88.118/ADMIN", 300), Reference("88.118.2/ABC123", 100))
    assert encode_vlist(refs) == data
    assert decode_vlist(encode_vlist([])) == ()
    with pytest.raises(RemoteProtocolError):
        decode_vlist(data + b"x")


# --- Handle key format and JWK --------------------------------------------------------


def test_golden_rsa_key_round_trip() -> None:
    raw = SiteInfo.from_wire(reply_body(13)).servers[0].public_key
    key = decode_public_key(raw)
    assert isinstance(key, rsa.RSAPublicKey)
    nums = key.public_numbers()
    assert nums.e == 65537 and nums.n.bit_length() == 2048
    assert nums.n.to_bytes(256, "big").hex().startswith("97970261d0")
    assert raw.endswith(b"\0\0\0\0")  # the reference's unfilled fourth length slot
    assert encode_public_key(key) == raw
    assert decode_public_key(raw[:-4]) == key  # readers ignore what follows the modulus
    jwk = public_key_to_jwk(key)
    assert jwk["kty"] == "RSA" and jwk["e"] == "AQAB"
    assert encode_public_key(public_key_from_jwk(jwk)) == raw


def test_dsa_key_round_trip() -> None:
    key = dsa.generate_private_key(1024).public_key()
    raw = encode_public_key(key)
    assert raw.startswith(b"\0\0\0\x0bDSA_PUB_KEY\0\0")
    assert encode_public_key(decode_public_key(raw)) == raw
    back = public_key_from_jwk(public_key_to_jwk(key))
    assert isinstance(back, dsa.DSAPublicKey) and back.public_numbers() == key.public_numbers()


def test_ec_and_ed25519_are_jwk_only() -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    ed_key = ed25519.Ed25519PrivateKey.generate().public_key()
    for key in (ec_key, ed_key):
        with pytest.raises(ValueFormatError, match="no encoding"):
            encode_public_key(key)
    jwk = public_key_to_jwk(ec_key)
    assert jwk["kty"] == "EC" and jwk["crv"] == "P-256"
    assert len(jwk["x"]) == len(jwk["y"]) == 43  # 32 bytes, unpadded base64url
    back = public_key_from_jwk(jwk)
    assert isinstance(back, ec.EllipticCurvePublicKey)
    assert back.public_numbers() == ec_key.public_numbers()
    ed_jwk = public_key_to_jwk(ed_key)
    assert ed_jwk["kty"] == "OKP" and ed_jwk["crv"] == "Ed25519"
    assert public_key_from_jwk(ed_jwk) == ed_key


@pytest.mark.parametrize(
    ("jwk", "problem"),
    [
        ({"n": "AQAB", "e": "AQAB"}, "kty"),
        ({"kty": "oct", "k": "AAAA"}, "not one of"),
        ({"kty": "RSA", "e": "AQAB"}, "'n'"),
        ({"kty": "RSA", "n": "AQAB", "e": "AQAB", "d": "AQAB"}, "private"),
        ({"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA"}, "32 bytes"),
        ({"kty": "EC", "crv": "secp256k1", "x": "AA", "y": "AA"}, "curve"),
        ({"kty": "EC", "crv": "P-256", "x": "A" * 43, "y": "A" * 43}, "invalid EC"),
        ({"kty": "OKP", "crv": "X25519", "x": "A" * 43}, "Ed25519"),
        ({"kty": "OKP", "crv": "Ed25519", "x": "!!!"}, "base64url"),
    ],
)
def test_bad_jwks(jwk: dict[str, str], problem: str) -> None:
    with pytest.raises(ValueFormatError, match=problem):
        public_key_from_jwk(jwk)


def test_bad_key_bytes() -> None:
    with pytest.raises(ValueFormatError, match="unknown public key type"):
        decode_public_key(b"\0\0\0\x03FOO\0\0")
    with pytest.raises(ValueFormatError, match="not supported"):
        decode_public_key(b"\0\0\0\x0aDH_PUB_KEY\0\0")
    with pytest.raises(ValueFormatError, match="malformed"):
        decode_public_key(b"\0\0\0\x0bRSA_PUB_KEY\0\0\0\0\0\x09\1")
    with pytest.raises(ValueFormatError, match="invalid RSA"):
        decode_public_key(b"\0\0\0\x0bRSA_PUB_KEY\0\0" + b"\0\0\0\1\2" + b"\0\0\0\1\4")


# --- properties -----------------------------------------------------------------------

DECODERS: list[Callable[[bytes], object]] = [
    decode_admin,
    decode_vlist,
    SiteInfo.from_wire,
    decode_public_key,
]


@pytest.mark.parametrize("decode", DECODERS, ids=lambda f: f.__qualname__)
@given(data=st.binary(max_size=400))
def test_decoders_raise_only_protocol_errors(
    decode: Callable[[bytes], object], data: bytes
) -> None:
    with contextlib.suppress(ProtocolError):
        decode(data)


@given(data=st.binary(max_size=64))
def test_structured_prefixes_of_valid_data_fail_cleanly(data: bytes) -> None:
    """Valid headers followed by junk: still only ProtocolError."""
    for prefix in (GOLDEN_ADMIN[:6], reply_body(13)[:60], b"\0\0\0\x0bRSA_PUB_KEY\0\0"):
        for decode in DECODERS:
            with contextlib.suppress(ProtocolError):
                decode(prefix + data)


_text = st.text(st.characters(codec="utf-8"), max_size=12)
_u32 = st.integers(0, 0xFFFFFFFF)
_interfaces = st.builds(Interface, st.integers(0, 255), st.integers(0, 255), _u32)
_servers = st.builds(
    ServerInfo,
    _u32,
    st.binary(min_size=16, max_size=16),
    st.binary(max_size=40),
    st.lists(_interfaces, max_size=3).map(tuple),
)
_sites = st.builds(
    SiteInfo,
    serial=st.integers(0, 0xFFFF),
    servers=st.lists(_servers, max_size=3).map(tuple),
    data_version=st.integers(0, 0xFFFF),
    major=st.integers(0, 255),
    minor=st.integers(0, 255),
    primary=st.booleans(),
    multi_primary=st.booleans(),
    hash_option=st.integers(0, 255),
    hash_filter=_text,
    attributes=st.lists(st.tuples(_text, _text), max_size=3).map(tuple),
)


@given(site=_sites)
def test_site_round_trip(site: SiteInfo) -> None:
    assert SiteInfo.from_wire(site.to_wire()) == site


@given(
    admin=st.builds(AdminRef, _text, _u32, st.integers(0, 0xFFFF), st.booleans()),
    refs=st.lists(st.builds(Reference, _text, _u32), max_size=5),
)
def test_admin_and_vlist_round_trip(admin: AdminRef, refs: list[Reference]) -> None:
    assert decode_admin(encode_admin(admin)) == admin
    assert decode_vlist(encode_vlist(refs)) == tuple(refs)
