"""Cost bombs a tenant could plant (issue 14, finding 5), refused on every write path: a
pre-hashed HS_SECKEY (its iterations are the tenant's choice) and an HS_PUBKEY whose
verification costs more than the node's bounds (RSA exponent over 65537, modulus
outside 1024..8192 bits, odd DSA parameters, curves other than P-256/384/521)."""

from __future__ import annotations

import base64
import csv
import io
import json
import secrets
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa

from node.app import Node
from node.auth.pubkey import check_key_value
from node.secrets.legacy import hash_secret
from node.writes.bulkrows import Batch, RowPreparer
from protocol.errors import ValueFormatError
from protocol.keys import costly_key, encode_public_key, public_key_to_jwk
from protocol.templates import Template
from protocol.values import HandleValue
from tests.node.abuse_auth_support import exponent_bomb
from tests.node.http_support import A, Api, admin_of, admin_value, db_state

BOMB_HASH = hash_secret(b"whatever", 5_000_000, salt=b"s" * 16)
TEMPLATE = Template.from_json(
    {
        "handle": "88.118.2/TPL.KEYS",
        "version": "1.0",
        "name": "keys",
        "items": [
            {"idType": "HS_SECKEY", "idIndex": 2000, "required": False},
            {"idType": "HS_PUBKEY", "idIndex": 2001, "required": False},
            {"idType": "note", "idIndex": 2002, "required": False},
        ],
    }
)


def _rsa(bits: int, e: int = 65537) -> rsa.RSAPublicKey:
    """A public key of that size (a random odd modulus: nothing is signed with it)."""
    n = secrets.randbits(bits) | (1 << (bits - 1)) | 1
    return rsa.RSAPublicNumbers(e, n).public_key()


def test_key_bounds() -> None:
    """What the node verifies with, and what it refuses: the cost of one verification
    stays around a millisecond (an RSA-3072 key with a 3,070-bit exponent: ~25 ms)."""
    assert costly_key(exponent_bomb()) is not None
    assert "exponent" in (costly_key(_rsa(2048, e=65539)) or "")
    assert costly_key(_rsa(2048, e=3)) is None and costly_key(_rsa(2048)) is None
    assert "modulus" in (costly_key(_rsa(512)) or "")
    assert "modulus" in (costly_key(_rsa(9000)) or "") and costly_key(_rsa(8192)) is None
    assert costly_key(ec.generate_private_key(ec.SECP256R1()).public_key()) is None
    assert "curve" in (costly_key(ec.generate_private_key(ec.BrainpoolP512R1()).public_key()) or "")
    assert costly_key(ed25519.Ed25519PrivateKey.generate().public_key()) is None
    assert costly_key(dsa.generate_private_key(1024).public_key()) is None
    check_key_value(HandleValue(1, "URL", b"x"))  # not a key: not checked
    check_key_value(HandleValue(1, "HS_PUBKEY", b"opaque"))  # not read, so never used
    for data in (
        encode_public_key(exponent_bomb()),
        json.dumps(public_key_to_jwk(exponent_bomb())).encode(),
        exponent_bomb().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    ):
        with pytest.raises(ValueFormatError, match=r"value 7: HS_PUBKEY .*exponent"):
            check_key_value(HandleValue(7, "hs_pubkey", data))


def _prepare(fmt: str, records: list[bytes], header: tuple[str, ...] = ()) -> list[str]:
    batch = Batch(
        format=fmt,
        lines=list(range(2, 2 + len(records))),
        records=records,
        now_s=1_800_000_000,
        header=header,
        template=TEMPLATE.handle if fmt == "csv" else None,
        templates={TEMPLATE.handle.upper(): TEMPLATE},
    )
    prepared = RowPreparer(None).prepare(batch)
    assert not prepared.wanting
    return [r.reason for r in prepared.rejected] + ["ok"] * len(prepared.rows)


def _csv(*cells: str) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(cells)
    return out.getvalue().encode("utf-8")


def test_bulk_import_refuses_secrets_and_costly_keys_in_fields_too() -> None:
    """A template may name HS_SECKEY or HS_PUBKEY fields: a CSV row filling them went
    straight into the registry, neither sealed nor checked."""
    bomb_jwk = json.dumps(public_key_to_jwk(exponent_bomb()))
    good_jwk = json.dumps(public_key_to_jwk(_rsa(2048)))
    header = ("handle", "HS_SECKEY", "HS_PUBKEY", "note")
    reasons = _prepare(
        "csv",
        [
            _csv("88.118.2/K-1", BOMB_HASH.decode("latin-1"), "", "n"),
            _csv("88.118.2/K-2", "plain-secret", "", "n"),
            _csv("88.118.2/K-3", "", bomb_jwk, "n"),
            _csv("88.118.2/K-4", "", good_jwk, "n"),
        ],
        header,
    )
    assert "HS_SECKEY secrets are not imported in bulk" in reasons[0]
    assert "HS_SECKEY secrets are not imported in bulk" in reasons[1]
    assert "HS_PUBKEY" in reasons[2] and "exponent" in reasons[2]
    assert reasons[3:] == ["ok"]
    ndjson = [
        orjson.dumps({"handle": "88.118.2/K-5", "template": TEMPLATE.handle, "fields": f})
        for f in ({"HS_PUBKEY": bomb_jwk}, {"note": "x"})
    ] + [
        orjson.dumps(
            {
                "handle": "88.118.2/K-6",
                "values": [
                    {
                        "index": 7,
                        "type": "HS_PUBKEY",
                        "data": {"format": "string", "value": bomb_jwk},
                    }
                ],
            }
        )
    ]
    reasons = _prepare("ndjson", ndjson)
    assert len(reasons) == 3 and reasons[2] == "ok"
    assert all("exponent" in r for r in reasons[:2]), reasons


def _pubkey(index: int, key: Any) -> dict[str, Any]:
    return {
        "index": index,
        "type": "HS_PUBKEY",
        "data": {"format": "key", "value": public_key_to_jwk(key)},
    }


async def test_every_http_write_path_refuses_bombs(
    http_node: Node, api: Api, database_url: str
) -> None:
    before = await db_state(database_url)
    hashed = {
        "index": 300,
        "type": "HS_SECKEY",
        "data": {"format": "base64", "value": base64.b64encode(BOMB_HASH).decode()},
    }
    bomb = _pubkey(301, exponent_bomb())
    for value in (hashed, bomb):
        r = await api.put(
            "/api/handles/88.118.2/BOMB", [admin_value("88.118.2"), value], headers=admin_of(A)
        )
        assert (r.status, r.json["responseCode"]) == (400, 202), r.json
        r = await api.put(
            "/api/handles/88.118.2/ADMIN?index=" + str(value["index"]),
            [value],
            headers=admin_of(A),
        )
        assert r.status == 400, r.json
        r = await api.post(
            "/api/batches",
            {"items": [{"op": "create", "handle": "88.118.2/BOMB", "values": [value]}]},
            headers=admin_of(A),
        )
        assert r.json["results"][0]["status"] == 400, r.json
    assert await db_state(database_url) == before
    ok = _pubkey(301, _rsa(2048))
    r = await api.put("/api/handles/88.118.2/ADMIN?index=301", [ok], headers=admin_of(A))
    assert r.status in (200, 201), r.json
