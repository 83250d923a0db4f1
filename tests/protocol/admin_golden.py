"""Loader for tests/vectors/handle-admin-golden.txt: authentication, session and admin
exchanges captured from the reference (23 cases; the file's header explains the format).

The wire lines and ``# decoded:`` comments are read by ``golden.load``; this module adds
what the admin capture has on top: reassembled UDP messages, encrypted messages
decrypted with the session key from the client's key log, the key logs themselves
(the client's DH private x and session key), and the secrets the captures used.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from protocol.fragment import Reassembler
from protocol.message import Message, decode
from protocol.session import decrypt_message
from tests.protocol.golden import DecodedInfo, Exchange, load, vectors_dir

ADMIN_GOLDEN_FILE = "handle-admin-golden.txt"
# HS_SECKEY values seeded on the reference (the file's header).
SECRETS = {"88.118/ADMIN": b"secret123", "88.118/UADMIN": "sécret-ü".encode()}
WRONG_SECRET = b"wrong-secret"  # what the client answered with in cases 11 and 12
# RFC 2409 group 2 (1024 bits, g = 2): the group the reference client sends.
GROUP2_P = int(
    "ffffffffffffffffc90fdaa22168c234c4c6628b80dc1cd129024e088a67cc74020bbea63b139b22514a08798e"
    "3404ddef9519b3cd3a431b302b0a6df25f14374fe1356d6d51c245e485b576625e7ec6f44c42e9a637ed6b0bff"
    "5cb6f406b7edee386bfb5a899fa5ae9f24117c4b1fe649286651ece65381ffffffffffffffff",
    16,
)


@dataclass(frozen=True)
class CapturedMessage:
    direction: str
    transport: str
    wire: bytes  # as sent, UDP fragments reassembled; encrypted when ``encrypted``
    parts: tuple[bytes, ...]  # the datagrams or TCP frame it came in
    plain: bytes  # ``wire``, decrypted when it was encrypted
    message: Message
    info: DecodedInfo

    @property
    def encrypted(self) -> bool:
        return self.wire != self.plain


def load_admin() -> tuple[Exchange, ...]:
    return load(vectors_dir() / ADMIN_GOLDEN_FILE)


def admin_case(n: int) -> Exchange:
    return next(e for e in load_admin() if e.number == n)


def _observed(e: Exchange) -> str:
    return "\n".join(c for c in e.comments if c.startswith(("# observed:", "# note:")))


def logged_private_x(e: Exchange) -> int | None:
    """The client's DH private value from the key log (reference or raw client)."""
    m = re.search(r"private x ?= ?([0-9a-f]+)", _observed(e))
    return int(m.group(1), 16) if m else None


def logged_session_key(e: Exchange) -> bytes | None:
    """The session key the client derived and logged (the reference client logs the
    4-byte algorithm id first; the raw client logs the key alone)."""
    text = _observed(e)
    m = re.search(r"key bytes \(4-byte algorithm id \+ session key\) 00000003([0-9a-f]+)", text)
    m = m or re.search(r"derived key ([0-9a-f]{64})", text)
    return bytes.fromhex(m.group(1)) if m else None


@cache
def captured_messages(number: int) -> tuple[CapturedMessage, ...]:
    """Every message of a case in order, each with its ``# decoded:`` group."""
    e = admin_case(number)
    key = logged_session_key(e)
    infos = e.decoded
    out: list[CapturedMessage] = []
    ra = Reassembler()
    pending: list[bytes] = []
    for line in e.lines:
        pending.append(line.data)
        whole = ra.feed(line.data, now=0.0) if line.is_udp else line.data
        if whole is None:
            continue
        plain = whole
        if whole[2] & 0x40:
            assert key is not None, f"case {number}: an encrypted message but no session key"
            plain = decrypt_message(whole, key)
        info = infos[len(out)]
        out.append(
            CapturedMessage(
                line.direction, line.transport, whole, tuple(pending), plain, decode(plain), info
            )
        )
        pending = []
    assert not pending and ra.pending == 0 and len(out) == len(infos)
    return tuple(out)


def all_captured() -> list[tuple[int, CapturedMessage]]:
    return [(e.number, m) for e in load_admin() for m in captured_messages(e.number)]


def checks(info: DecodedInfo) -> list[str]:
    """The ``check:`` lines of a message, without the prefix."""
    return [line[len("check: ") :] for line in info.lines if line.startswith("check: ")]


def hex_after(text: str, label: str) -> bytes:
    m = re.search(re.escape(label) + r"\s*([0-9a-f]+)", text)
    assert m, f"no hex after {label!r} in {text!r}"
    return bytes.fromhex(m.group(1))


def request_of(messages: tuple[CapturedMessage, ...], reply_at: int) -> CapturedMessage:
    """The request a reply answers: the latest earlier C>S message with its request id."""
    rid = messages[reply_at].message.request_id
    return next(
        m
        for m in reversed(messages[:reply_at])
        if m.direction == "C>S" and m.message.request_id == rid
    )
