"""Cost bombs already in the registry (rows from before the write rules, or raw SQL) are
never computed (issue 14, finding 5): a stored hash over the node's bound is skipped and
counted, an HS_PUBKEY over the key bounds is skipped and counted, at most
auth_max_keys_tried keys are tried for an index-0 identity; and over the native
protocol an unknown identity costs what a wrong answer costs."""

from __future__ import annotations

import base64
import os

import aiohttp
from cryptography.hazmat.primitives.asymmetric import rsa

from node.app import Node
from node.demo.dataset import SILK_MILL
from node.secrets.legacy import hash_secret
from protocol.authbodies import HS_SECKEY, ChallengeAnswer
from protocol.bodies import ChallengeReply, ResolutionRequest
from protocol.challenge import SeckeyForm, make_seckey_answer
from protocol.codes import OpCode, OpFlag, ResponseCode
from protocol.keys import encode_public_key
from protocol.message import Envelope, Header, Message, encode
from protocol.values import HandleValue
from tests.node.abuse_auth_support import bomb_value, checks_run, plant_values, sample
from tests.node.challenge_support import PrivateKey, b64, sign
from tests.node.conftest import StartNode
from tests.node.http_support import A, Api, admin_of, basic
from tests.node.native_support import udp_exchange

ADMIN = "88.118.2/ADMIN"
PATH = "/api/handles/88.118.2/ADMIN?auth=true"
WHO_AM_I = "/api/sessions/this"  # without a session: whom the credentials prove


def skipped(node: Node, reason: str) -> float:
    return sample(node, "idnode_auth_keys_skipped_total", {"reason": reason})


async def test_a_stored_hash_over_the_bound_is_never_computed(
    http_node: Node, api: Api, database_url: str
) -> None:
    """A hashed secret at 5,000,000 iterations (~3 s of a core) sits at index 301: an
    index-0 login skips it, and the next secret still proves the admin."""
    await plant_values(
        database_url,
        ADMIN,
        [
            HandleValue(301, HS_SECKEY, hash_secret(b"bomb", 5_000_000, salt=b"s" * 16)),
            HandleValue(302, HS_SECKEY, hash_secret(b"older-secret", 1000)),
        ],
    )
    before = checks_run(http_node)
    r = await api.get(PATH, headers=basic(ADMIN, "no-such-secret"))  # index 0: every key
    assert r.status == 401
    assert skipped(http_node, "cost") == 1
    assert checks_run(http_node) - before == 2  # the sealed 300 and the cheap hash at 302
    r = await api.get(WHO_AM_I, headers=basic(ADMIN, "older-secret"))
    assert r.json == {"authenticated": True, "id": "302:" + ADMIN}
    r = await api.get(WHO_AM_I, headers=basic(ADMIN, "bomb"))  # its own secret: not checkable
    assert r.status == 401 and skipped(http_node, "cost") == 3


async def _session(api: Api) -> dict[str, str]:
    r = await api.post("/api/sessions")
    assert r.status == 201
    return dict(r.json)


def _answer(session: dict[str, str], who: str, key: PrivateKey) -> dict[str, str]:
    cnonce = os.urandom(16)
    signature = sign(key, "SHA256", base64.b64decode(session["nonce"]) + cnonce)
    return {
        "Authorization": f'Handle sessionId="{session["sessionId"]}", id="{who}", '
        f'type="HS_PUBKEY", cnonce="{b64(cnonce)}", alg="SHA256", signature="{b64(signature)}"'
    }


async def test_public_key_bombs_are_skipped_and_keys_tried_are_capped(
    start_http_node: StartNode, database_url: str
) -> None:
    """Keys with a 3,070-bit exponent (~25 ms a verification; 250 of them froze the node
    for 3.3 s on one anonymous request) are never verified with; index 0 tries at most
    auth_max_keys_tried values."""
    node = await start_http_node(auth_max_keys_tried=4)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    good = HandleValue(305, "HS_PUBKEY", encode_public_key(key.public_key()))
    await plant_values(database_url, ADMIN, [bomb_value(i) for i in range(301, 305)] + [good])
    async with aiohttp.ClientSession() as http:
        api = Api(http, f"http://127.0.0.1:{node.http_port}")
        r = await api.put("/api/sessions/this", headers=_answer(await _session(api), ADMIN, key))
        # Index 0: keys 301-304 read and skipped unverified, 305 is the fifth: past the cap.
        assert r.status == 401, r.text
        assert skipped(node, "cost") == 4 and skipped(node, "cap") == 1
        r = await api.put(
            "/api/sessions/this", headers=_answer(await _session(api), "305:" + ADMIN, key)
        )
        assert r.status == 200 and r.json["id"] == "305:" + ADMIN, r.text
        r = await api.put(
            "/api/sessions/this", headers=_answer(await _session(api), "301:" + ADMIN, key)
        )
        assert r.status == 401 and skipped(node, "cost") == 5
        assert (await api.get(PATH, headers=admin_of(A))).status == 200


async def _native_answer(node: Node, who: str, secret: bytes) -> tuple[ResponseCode, bytes]:
    request = Message(
        Envelope(request_id=21),
        Header(OpCode.RESOLUTION, flags=OpFlag.RECU),
        ResolutionRequest("88.118.2/ADMIN"),
    )
    challenge = await udp_exchange(node, encode(request))
    assert isinstance(challenge.body, ChallengeReply) and challenge.digest is not None
    response = make_seckey_answer(
        secret,
        challenge.body.nonce,
        challenge.digest.digest,
        SeckeyForm.PBKDF2_HMAC_SHA1,
        iterations=50_000,
    )
    reply = await udp_exchange(
        node,
        encode(
            Message(
                Envelope(session_id=challenge.envelope.session_id, request_id=22),
                Header(OpCode.CHALLENGE_RESPONSE),
                ChallengeAnswer(HS_SECKEY, who, 300, response),
            )
        ),
    )
    return ResponseCode(reply.header.response_code), encode(reply)[20:]


async def test_native_unknown_identity_costs_what_a_wrong_answer_costs(http_node: Node) -> None:
    """The answer's PBKDF2 (50,000 iterations here) runs for an unknown identity too, on
    a key nobody holds: same work, same reply."""
    replies = []
    for who in (ADMIN, "88.118.2/NOBODY", "88.118.2/ROLL-2026-000123"):
        before = checks_run(http_node)
        rc, _ = await _native_answer(http_node, who, b"not-the-secret")
        assert checks_run(http_node) - before == 1, who
        replies.append(rc)
    assert replies == [ResponseCode.AUTHENTICATION_FAILED] * 3
    rc, _ = await _native_answer(http_node, ADMIN, SILK_MILL.admin_secret.encode())
    assert rc == ResponseCode.SUCCESS
