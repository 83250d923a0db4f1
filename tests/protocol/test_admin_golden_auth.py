"""Re-derive, from the bytes of the admin capture, every check it lists: request
digests, secret-key answers (with "secret123" / "sécret-ü"), DH shared secrets and
session keys, HS_MACs (and that a changed byte fails them), the encryption of
in-session messages, and the layout of public-key answers. HS_SIGNED replies are not
checked: the capture does not hold the server's public key."""

from __future__ import annotations

import hashlib
import re

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from protocol.bodies import ChallengeReply, HashType
from protocol.challenge import (
    HS_PUBKEY,
    HS_SECKEY,
    ChallengeAnswer,
    SeckeyForm,
    check_pubkey_answer,
    check_seckey_answer,
    make_pubkey_answer,
    make_seckey_answer,
    parse_seckey_answer,
    seckey_form_for,
)
from protocol.codes import ResponseCode
from protocol.errors import RemoteProtocolError
from protocol.message import Message, decode, encode, header_and_body
from protocol.negotiate import request_digest
from protocol.session import (
    DHPublicKey,
    SessionSetupReply,
    SessionSetupRequest,
    check_dh_group,
    check_mac,
    decrypt_message,
    dh_session_key,
    encrypt_message,
    mac_message,
    parse_dh_reply_data,
)
from protocol.wirebase import Reader
from tests.protocol.admin_golden import (
    SECRETS,
    WRONG_SECRET,
    CapturedMessage,
    admin_case,
    all_captured,
    captured_messages,
    checks,
    hex_after,
    load_admin,
    logged_private_x,
    logged_session_key,
    request_of,
)

CASES = [e.number for e in load_admin()]
SESSION_CASES = [n for n in CASES if logged_session_key(admin_case(n)) is not None]
_HASHES = {"MD5": HashType.MD5, "SHA-1": HashType.SHA1, "SHA-256": HashType.SHA256}


def test_session_cases() -> None:
    assert SESSION_CASES == [2, 5, 7, 8, 10, 15, 16, 18, 19, 20, 21]


# --- request digests --------------------------------------------------------------------


@pytest.mark.parametrize("number", CASES)
def test_request_digests(number: int) -> None:
    """Each digest is the hash of header + body of the request just before with the same
    request id, as each ``check: = <hash> of the header+body`` line says."""
    messages = captured_messages(number)
    seen = 0
    for i, m in enumerate(messages):
        digest_checks = [c for c in checks(m.info) if c.startswith("= ")]
        msg = m.message
        legacy = msg.body.legacy_digest if isinstance(msg.body, ChallengeReply) else None
        if msg.digest is None and legacy is None:
            assert not digest_checks
            continue
        (line,) = digest_checks
        request = request_of(messages, i).message
        m2 = re.match(r"= (MD5|SHA-1|SHA-256) of the header\+body .* \(opcode (\d+)", line)
        assert m2, line
        assert request.header.opcode == int(m2.group(2))
        if rid := re.search(r"reqId (0x[0-9a-f]+)", line):
            assert request.request_id == int(rid.group(1), 16)
        hash_type = _HASHES[m2.group(1)]
        expected = legacy if msg.digest is None else msg.digest.digest
        assert msg.digest is None or msg.digest.hash_type == hash_type
        assert request_digest(header_and_body(request), hash_type) == expected
        seen += 1
    assert seen == sum(any(c.startswith("= ") for c in checks(m.info)) for m in messages)


# --- secret-key and public-key answers ---------------------------------------------------


def challenge_for(messages: tuple[CapturedMessage, ...], answer_at: int) -> tuple[Message, bytes]:
    """The challenge an answer answers (the latest 402 under the answer's session id)
    and its digest."""
    sid = messages[answer_at].message.envelope.session_id
    challenge = next(
        m.message
        for m in reversed(messages[:answer_at])
        if isinstance(m.message.body, ChallengeReply) and m.message.envelope.session_id == sid
    )
    assert isinstance(challenge.body, ChallengeReply)
    if challenge.digest is not None:
        return challenge, challenge.digest.digest
    assert challenge.body.legacy_digest is not None
    return challenge, challenge.body.legacy_digest


def answers(kind: str) -> list[tuple[int, int]]:
    return [
        (n, i)
        for n in CASES
        for i, m in enumerate(captured_messages(n))
        if isinstance(m.message.body, ChallengeAnswer) and m.message.body.auth_type == kind
    ]


@pytest.mark.parametrize(("number", "at"), answers(HS_SECKEY))
def test_seckey_answers(number: int, at: int) -> None:
    messages = captured_messages(number)
    answer = messages[at].message.body
    assert isinstance(answer, ChallengeAnswer)
    challenge, digest = challenge_for(messages, at)
    nonce = challenge.body.nonce if isinstance(challenge.body, ChallengeReply) else b""
    (line,) = [c for c in checks(messages[at].info) if c.startswith("recomputed")]
    m = re.match(
        r"recomputed over nonce\|\|digest of the session-(\d+) challenge with secret '(.*)' -> (\w+)",
        line,
    )
    assert m, line
    assert int(m.group(1)) == challenge.envelope.session_id
    secret = m.group(2).encode()
    assert secret == SECRETS[answer.handle]
    parsed = parse_seckey_answer(answer.response)
    form = check_seckey_answer(secret, nonce, digest, answer.response)
    if m.group(3) == "MATCH":
        assert form is parsed.form
        salt, iterations = parsed.salt, parsed.iterations or 10_000
        again = make_seckey_answer(secret, nonce, digest, form, salt=salt, iterations=iterations)
        assert again == answer.response
        only = frozenset({form})
        assert check_seckey_answer(secret, nonce, digest, answer.response, allowed=only) is form
        others = frozenset(SeckeyForm) - only
        assert check_seckey_answer(secret, nonce, digest, answer.response, allowed=others) is None
        assert check_seckey_answer(secret, nonce, digest[:-1] + b"\0", answer.response) is None
    else:  # cases 11 and 12: the client used the wrong secret
        assert m.group(3) == "MISMATCH" and form is None
        expected = make_seckey_answer(
            secret, nonce, digest, parsed.form, salt=parsed.salt, iterations=parsed.iterations
        )
        assert parse_seckey_answer(expected).mac == hex_after(line, "(expected")
        assert check_seckey_answer(WRONG_SECRET, nonce, digest, answer.response) is parsed.form
    _check_answer_description(messages[at].info.lines, parsed.form, answer.response)
    if number not in (16, 20, 23):  # the reference client's choice; the raw client's varies
        lower = min(challenge.envelope.version, challenge.envelope.suggested_version or (0, 0))
        assert seckey_form_for(lower) is parsed.form


def _check_answer_description(lines: list[str], form: SeckeyForm, response: bytes) -> None:
    (line,) = [line for line in lines if line.startswith("HS_SECKEY response")]
    parsed = parse_seckey_answer(response)
    if form is SeckeyForm.PBKDF2_HMAC_SHA1:
        assert line == (
            f"HS_SECKEY response form 0x22 (PBKDF2-HMAC-SHA1): salt(16)={parsed.salt.hex()} "
            f"iterations={parsed.iterations} keyLength={parsed.key_bits} bits "
            f"mac(20)={parsed.mac.hex()}"
        )
    elif form is SeckeyForm.MD5_OLD:
        assert line == f"HS_SECKEY response, old format (< 2.1): MD5 = {response.hex()}"
    else:
        assert line.startswith(f"HS_SECKEY response form 0x{int(form):02x} (")
        assert line.endswith(f"): {len(parsed.mac)} bytes {parsed.mac.hex()}")


def test_every_seckey_form_is_in_the_capture() -> None:
    forms = {
        parse_seckey_answer(m.body.response).form
        for n, i in answers(HS_SECKEY)
        if isinstance((m := captured_messages(n)[i].message).body, ChallengeAnswer)
    }
    assert forms == set(SeckeyForm)


def test_non_ascii_secret_is_double_encoded() -> None:
    """Case 22: the 0x22 form hashes UTF-8(Latin-1-decode(k)), not k."""
    ((number, at),) = [(n, i) for n, i in answers(HS_SECKEY) if n == 22]
    messages = captured_messages(number)
    answer = messages[at].message.body
    assert isinstance(answer, ChallengeAnswer)
    challenge, digest = challenge_for(messages, at)
    assert isinstance(challenge.body, ChallengeReply)
    nonce, parsed = challenge.body.nonce, parse_seckey_answer(answer.response)
    line = next(c for c in checks(messages[at].info) if c.startswith("non-ASCII"))
    key = "sécret-ü".encode()
    assert key == hex_after(line, "= bytes")
    java_password = hex_after(line, "then UTF-8:")
    assert java_password == key.decode("latin-1").encode("utf-8") != key
    import hmac

    for password, matches in ((key, False), (java_password, True)):
        dk = hashlib.pbkdf2_hmac("sha1", password, parsed.salt, parsed.iterations, 20)
        mac = hmac.new(dk, nonce + digest, hashlib.sha1).digest()
        assert (mac == parsed.mac) is matches
    assert check_seckey_answer(key, nonce, digest, answer.response) is SeckeyForm.PBKDF2_HMAC_SHA1


@pytest.mark.parametrize(("number", "at"), answers(HS_PUBKEY))
def test_pubkey_answer_layout(number: int, at: int) -> None:
    """Cases 17 and 18: STR "SHA-256" + STR 256-byte RSA signature over nonce|digest.
    The identity's public key is not in the capture, so a fresh RSA-2048 key shows our
    answer has the same layout and verifies, and the captured one does not under it."""
    messages = captured_messages(number)
    answer = messages[at].message.body
    assert isinstance(answer, ChallengeAnswer) and answer.handle == "88.118/PUBADMIN"
    challenge, digest = challenge_for(messages, at)
    assert isinstance(challenge.body, ChallengeReply)
    nonce = challenge.body.nonce
    r = Reader(answer.response)
    hash_name, signature = r.utf8("hash name"), r.blob("signature")
    assert r.at_end() and hash_name == "SHA-256" and len(signature) == 256
    assert f"HS_PUBKEY response: hash='SHA-256' signature(256)={signature.hex()}" in (
        messages[at].info.lines
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ours = make_pubkey_answer(key, nonce, digest)
    assert len(ours) == len(answer.response) and ours[:15] == answer.response[:15]
    assert check_pubkey_answer(key.public_key(), nonce, digest, ours)
    assert not check_pubkey_answer(key.public_key(), nonce, digest, answer.response)


# --- Diffie-Hellman and session keys -----------------------------------------------------


@pytest.mark.parametrize("number", SESSION_CASES)
def test_dh_session_keys(number: int) -> None:
    exchange = admin_case(number)
    messages = captured_messages(number)
    (request,) = [m for m in messages if isinstance(m.message.body, SessionSetupRequest)]
    (reply,) = [m for m in messages if isinstance(m.message.body, SessionSetupReply)]
    assert isinstance(request.message.body, SessionSetupRequest)
    assert isinstance(reply.message.body, SessionSetupReply)
    assert request.message.body.public_key is not None
    client = DHPublicKey.from_bytes(request.message.body.public_key)
    algorithm, server = parse_dh_reply_data(reply.message.body.data)
    assert algorithm == 3 and (server.p, server.g) == (client.p, client.g)
    check_dh_group(client)
    check_dh_group(server)
    x = logged_private_x(exchange)
    assert x is not None and pow(client.g, x, client.p) == client.y
    lines = checks(reply.info)
    assert "the server's p and g are byte-identical to the client's" in lines
    shared = pow(server.y, x, server.p)
    (secret_line,) = [c for c in lines if c.startswith("shared secret")]
    assert shared.to_bytes(len(hex_after(secret_line, ") =")), "big") == hex_after(
        secret_line, ") ="
    )
    key = dh_session_key(x, server.y, server.p)
    (key_line,) = [c for c in lines if c.startswith("session key =")]
    assert key == hex_after(key_line, "first 32 bytes =") == logged_session_key(exchange)
    assert len(key) == 32
    for derived in (c for c in lines if c.startswith("the client derived")):
        assert hex_after(derived, "the client derived") == key and derived.endswith("MATCH")


# --- HS_MAC -----------------------------------------------------------------------------


def _maced() -> list[tuple[int, int]]:
    return [
        (n, i)
        for n in SESSION_CASES
        for i, m in enumerate(captured_messages(n))
        if m.message.credential is not None and m.message.credential.type == "HS_MAC"
    ]


def _server_verdict(messages: tuple[CapturedMessage, ...], at: int) -> int | None:
    rid = messages[at].message.request_id
    return next(
        (
            m.message.header.response_code
            for m in messages[at + 1 :]
            if m.direction == "S>C" and m.message.request_id == rid
        ),
        None,
    )


@pytest.mark.parametrize(("number", "at"), _maced())
def test_macs(number: int, at: int) -> None:
    """Every HS_MAC verifies with the session key from the key log, except the two the
    server refused with 502 in case 15 (counter altered; wrong key); a re-MAC with the
    same counter reproduces the bytes; any changed byte of header or body fails it."""
    messages = captured_messages(number)
    m = messages[at]
    key = logged_session_key(admin_case(number))
    assert key is not None and m.message.credential is not None
    counter = m.message.credential.signer_index
    refused = m.direction == "C>S" and _server_verdict(messages, at) == (
        ResponseCode.SESSION_KEY_INVALID
    )
    assert check_mac(m.message, key) is not refused
    assert refused == (number == 15 and counter in (102, 4))
    if refused:
        return
    assert encode(mac_message(m.message, key, counter)) == m.plain
    legacy = m.message.envelope.version < (2, 7)
    assert m.message.credential.digest_algorithm == ("SHA1" if legacy else "HMAC-SHA256")
    for line in checks(m.info):
        if line.startswith("HS_MAC"):
            assert line.endswith("-> MATCH")
            if legacy:
                n = 4 + len(header_and_body(m.message)) + len(key) + len(key) + 10
                assert f"'broken' buffer of {n} bytes" in line
            else:
                assert f"(=credential index {counter})" in line
    assert not check_mac(m.message, bytes(32))
    for offset in range(20, 20 + len(header_and_body(m.message)), 7):
        data = bytearray(m.plain)
        data[offset] ^= 0x01
        try:
            flipped = decode(bytes(data))
        except RemoteProtocolError:
            continue
        assert not check_mac(flipped, key), offset
    if not legacy:  # the 2.5/2.6 form binds neither ids nor counter (case 5 note)
        moved = decode(m.plain[:4] + bytes([m.plain[4] ^ 1]) + m.plain[5:])
        assert not check_mac(moved, key)


def test_legacy_mac_does_not_bind_the_counter() -> None:
    """Case 5: the two MODIFY success replies (server counters 2 and 3) carry the same
    2.6 MAC."""
    replies = [
        m.message
        for m in captured_messages(5)
        if m.direction == "S>C"
        and m.message.header.response_code == ResponseCode.SUCCESS
        and m.message.envelope.version == (2, 6)
    ]
    creds = [r.credential for r in replies]
    assert [c.signer_index for c in creds if c] == [2, 3]
    assert len({c.signature for c in creds if c}) == 1


# --- encryption -------------------------------------------------------------------------


def _encrypted() -> list[tuple[int, int]]:
    return [
        (n, i) for n, m in all_captured() for i in [captured_messages(n).index(m)] if m.encrypted
    ]


@pytest.mark.parametrize(("number", "at"), _encrypted())
def test_encrypted_messages(number: int, at: int) -> None:
    m = captured_messages(number)[at]
    key = logged_session_key(admin_case(number))
    assert key is not None
    (line,) = [line for line in m.info.lines if line.startswith("ENCRYPTED payload")]
    iv = hex_after(line, "IV(16)")
    assert iv == m.wire[20:36]
    assert f"decrypted -> {len(m.plain) - 20} bytes (padding ok): {m.plain[20:].hex()}" in line
    assert encrypt_message(m.plain, key, iv) == m.wire
    assert decrypt_message(m.wire, key) == m.plain
    with pytest.raises(RemoteProtocolError) as e:
        decode(m.wire)  # the node decrypts first
    assert e.value.response_code == ResponseCode.OPERATION_NOT_SUPPORTED
    # A wrong key turns the padding (or the message inside) into garbage.
    try:
        garbage = decrypt_message(m.wire, bytes(32))
    except RemoteProtocolError as err:
        assert "padding" in err.message
    else:
        assert garbage != m.plain


def test_encrypted_cases() -> None:
    assert sorted({n for n, _ in _encrypted()}) == [2, 19]
    assert len(_encrypted()) == 7
