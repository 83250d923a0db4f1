"""Signed messages and the signature memo: a kept signature is reused only where the
bytes it covers repeat (below 2.7), within the expiration window, and always verifies."""

from __future__ import annotations

from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from protocol.bodies import ResolutionReply, ResolutionRequest
from protocol.codes import OpCode, OpFlag, ResponseCode
from protocol.message import Envelope, Header, Message, decode, encode
from protocol.msgsign import SignatureMemo, sign_message, verify_message
from protocol.negotiate import build_reply
from protocol.values import HandleValue

NOW = 1_795_500_000.0
HANDLE = "88.118.2/ABC123"


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def request(version: tuple[int, int], request_id: int, handle: str = HANDLE) -> Message:
    env = Envelope(
        *version, suggested_major=version[0], suggested_minor=version[1], request_id=request_id
    )
    header = Header(OpCode.RESOLUTION, flags=OpFlag.CERT | OpFlag.PUBL)
    return Message(env, header, ResolutionRequest(handle, (), ()))


def reply(req: Message, now: float, url: bytes = b"https://example.com/abc123") -> Message:
    assert isinstance(req.body, ResolutionRequest)
    body = ResolutionReply(req.body.handle, (HandleValue(1, "URL", url),))
    unsigned = build_reply(req, ResponseCode.SUCCESS, body, now=now, site_serial=1)
    return replace(
        unsigned, header=replace(unsigned.header, flags=unsigned.header.flags | OpFlag.CERT)
    )


def received(message: Message) -> Message:
    """As a client sees it: encoded and decoded again."""
    return decode(encode(message))


@pytest.mark.parametrize("version", [(2, 1), (2, 5), (2, 6)])
def test_a_signature_serves_another_request_of_the_same_shape(
    key: rsa.RSAPrivateKey, version: tuple[int, int]
) -> None:
    memo = SignatureMemo(window_s=60)
    first = sign_message(reply(request(version, 1), NOW), key)
    memo.keep(first)
    later = reply(request(version, 2), NOW + 59)
    reused = memo.find(later)
    assert reused is not None
    assert reused.envelope.request_id == 2  # addressed to the new request...
    assert reused.header.expiration == first.header.expiration  # ...stamped when signed
    assert verify_message(received(reused), key.public_key())


def test_below_2_6_the_version_is_not_signed(key: rsa.RSAPrivateKey) -> None:
    memo = SignatureMemo()
    memo.keep(sign_message(reply(request((2, 5), 1), NOW), key))
    at_2_1 = memo.find(reply(request((2, 1), 2), NOW))
    assert at_2_1 is not None and at_2_1.envelope.version == (2, 1)
    assert verify_message(received(at_2_1), key.public_key())


def test_a_signature_is_not_reused_past_the_window(key: rsa.RSAPrivateKey) -> None:
    memo = SignatureMemo(window_s=60)
    memo.keep(sign_message(reply(request((2, 5), 1), NOW), key))
    assert memo.find(reply(request((2, 5), 2), NOW + 61)) is None
    assert len(memo) == 0  # dropped: the next signature takes its place


def test_different_signed_bytes_never_share_a_signature(key: rsa.RSAPrivateKey) -> None:
    memo = SignatureMemo()
    memo.keep(sign_message(reply(request((2, 5), 1), NOW), key))
    assert memo.find(reply(request((2, 5), 2), NOW, url=b"https://example.com/other")) is None
    assert memo.find(reply(request((2, 6), 2), NOW)) is None  # 2.6 signs its version
    assert memo.find(reply(request((2, 5), 2, handle="88.118.2/OTHER"), NOW)) is None
    assert memo.find(reply(request((2, 5), 2), NOW), digest="SHA-1") is None


@pytest.mark.parametrize("version", [(2, 7), (2, 10), (2, 11)])
def test_from_2_7_the_request_id_is_signed_and_nothing_is_kept(
    key: rsa.RSAPrivateKey, version: tuple[int, int]
) -> None:
    memo = SignatureMemo()
    signed = sign_message(reply(request(version, 1), NOW), key)
    memo.keep(signed)
    assert len(memo) == 0
    assert memo.find(reply(request(version, 1), NOW)) is None
    # Why: the same reply readdressed to another request no longer verifies.
    readdressed = replace(signed, envelope=replace(signed.envelope, request_id=2))
    assert not verify_message(received(readdressed), key.public_key())


def test_the_memo_is_bounded(key: rsa.RSAPrivateKey) -> None:
    memo = SignatureMemo(max_entries=2)
    for handle in ("88.118.2/A", "88.118.2/B", "88.118.2/C"):
        memo.keep(sign_message(reply(request((2, 5), 1, handle), NOW), key))
    assert len(memo) == 2
