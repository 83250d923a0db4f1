"""Pure parts of node.auth: the failure limiter (clock passed in), Basic header parsing,
the plain-HTTP policy, and which HS_ADMIN bits a change needs."""

from __future__ import annotations

import base64

import pytest

from node.auth.authorizer import parse_admin_list
from node.auth.basic import parse_basic
from node.auth.chain import plain_credentials_allowed
from node.auth.identity import AuthContext, MalformedCredentials
from node.auth.permissions import ReadOnlyValue, perms_for_change, perms_for_removal
from node.auth.ratelimit import FailureLimiter
from protocol.codes import AdminPerm as P
from protocol.structured import AdminRef, encode_admin
from protocol.values import HandleValue


def test_limiter_window_without_sleeping() -> None:
    lim = FailureLimiter(3, 60.0)
    for t in (0.0, 10.0, 20.0):
        assert lim.retry_after("10.0.0.1", t) is None
        lim.record_failure("10.0.0.1", t)
    assert lim.retry_after("10.0.0.1", 21.0) == 39  # until the failure at t=0 leaves
    assert lim.retry_after("10.0.0.2", 21.0) is None  # per address
    assert lim.retry_after("10.0.0.1", 60.5) is None  # the oldest expired: 2 left
    lim.record_failure("10.0.0.1", 61.0)
    assert lim.retry_after("10.0.0.1", 61.0) == 9
    assert lim.retry_after("10.0.0.1", 200.0) is None and lim.tracked() == 0


def test_limiter_memory_is_bounded() -> None:
    lim = FailureLimiter(2, 60.0, max_tracked=100)
    for n in range(1000):
        lim.record_failure(f"10.0.{n // 256}.{n % 256}", 1.0)
    assert lim.tracked() <= 100


def _basic(raw: bytes) -> str:
    return "Basic " + base64.b64encode(raw).decode()


@pytest.mark.parametrize(
    "raw, expected",
    [
        (b"300%3A88.118.2%2FADMIN:s3cret", (300, "88.118.2/ADMIN", b"s3cret")),
        (b"300%3A88.118.2%2FADMIN:pa:ss%41", (300, "88.118.2/ADMIN", b"pa:ss%41")),  # password raw
        (b"300:88.118.2/ADMIN:pa:ss", (300, "88.118.2/ADMIN", b"pa:ss")),  # curl -u, unencoded
        (b"88.118.2%2FADMIN:x", (0, "88.118.2/ADMIN", b"x")),
        (b"300%3A88.118.5%2F%E7%BC%B8:x", (300, "88.118.5/缸", b"x")),
        ("300:88.118.5/缸:x".encode(), (300, "88.118.5/缸", b"x")),
        (b"a+b%3Ac:x", (0, "a+b:c", b"x")),  # '+' is not a space
    ],
)
def test_parse_basic(raw: bytes, expected: tuple[int, str, bytes]) -> None:
    assert parse_basic(_basic(raw)) == expected


@pytest.mark.parametrize(
    "header",
    [
        "Basic !!!",
        "Basic " + base64.b64encode(b"nocolon").decode(),
        _basic(b"300%3A88.118.2%2FADMIN:"),
        _basic(b"300:"),
        _basic(b"99999999999%3Ax%2Fy:s"),
        "Digest abc",
    ],
)
def test_parse_basic_rejects(header: str) -> None:
    with pytest.raises(MalformedCredentials):
        parse_basic(header)


@pytest.mark.parametrize(
    "policy, peer, secure, allowed",
    [
        ("loopback", "127.0.0.1", False, True),
        ("loopback", "::1", False, True),
        ("loopback", "::ffff:127.0.0.1", False, True),
        ("loopback", "10.1.2.3", False, False),
        ("loopback", "10.1.2.3", True, True),
        ("allow", "10.1.2.3", False, True),
        ("refuse", "127.0.0.1", False, False),
        ("refuse", "10.1.2.3", True, True),
        ("loopback", None, False, False),
    ],
)
def test_plain_credentials_policy(
    policy: str, peer: str | None, secure: bool, allowed: bool
) -> None:
    assert plain_credentials_allowed(policy, AuthContext({}, peer, secure)) is allowed


def _v(index: int, type_: str = "URL", data: bytes = b"x", perms: int = 0x0E) -> HandleValue:
    return HandleValue(index, type_, data, permissions=perms)


ADM = encode_admin(AdminRef("88.118.2/ADMIN", 300, 0xFFF))
ADM2 = encode_admin(AdminRef("88.118.3/ADMIN", 300, 0xFFF))


@pytest.mark.parametrize(
    "old, new, need",
    [
        ([_v(1)], [_v(1)], P(0)),
        ([_v(1)], [_v(1), _v(2)], P.ADD_VALUE),
        ([_v(1)], [_v(1), _v(100, "HS_ADMIN", ADM)], P.ADD_ADMIN),
        ([_v(1), _v(2)], [_v(1)], P.REMOVE_VALUE),
        ([_v(100, "HS_ADMIN", ADM)], [], P.REMOVE_ADMIN),
        ([_v(1)], [_v(1, data=b"y")], P.MODIFY_VALUE),
        ([_v(1, perms=0x0F)], [_v(1, data=b"y", perms=0x0F)], P(0)),  # publicly writable
        ([_v(100, "HS_ADMIN", ADM)], [_v(100, "HS_ADMIN", ADM2)], P.MODIFY_ADMIN),
        ([_v(100, "HS_ADMIN", ADM)], [_v(100)], P.REMOVE_ADMIN | P.MODIFY_VALUE),
        ([_v(100)], [_v(100, "HS_ADMIN", ADM)], P.MODIFY_VALUE | P.ADD_ADMIN),
    ],
)
def test_perms_for_change(old: list[HandleValue], new: list[HandleValue], need: P) -> None:
    assert perms_for_change(old, new) == need


def test_read_only_values_and_removal() -> None:
    with pytest.raises(ReadOnlyValue):
        perms_for_change([_v(1, perms=0x0A)], [_v(1, data=b"y", perms=0x0A)])
    old = [_v(1), _v(100, "hs_admin", ADM)]
    assert perms_for_removal(old, {1}) == P.REMOVE_VALUE
    assert perms_for_removal(old, {1, 100}) == P.REMOVE_VALUE | P.REMOVE_ADMIN
    assert perms_for_removal(old, {7}) == P.REMOVE_VALUE


def test_server_admin_list() -> None:
    refs = parse_admin_list("300:0.NA/88.118, 300:88.118/ADMIN,")
    assert [(r.handle, r.index, r.permissions) for r in refs] == [
        ("0.NA/88.118", 300, 0xFFF),
        ("88.118/ADMIN", 300, 0xFFF),
    ]
    with pytest.raises(ValueError):
        parse_admin_list("88.118/ADMIN")
