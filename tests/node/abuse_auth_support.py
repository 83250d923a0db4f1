"""Shared pieces of the password-guessing and cost-bomb tests: a node's metric samples,
planting values behind the write service's back (as rows written before its rules, or
by raw SQL, would be), and keys a tenant should not be able to store."""

from __future__ import annotations

import json
import secrets
from typing import Any

import asyncpg
from cryptography.hazmat.primitives.asymmetric import rsa

from node.app import Node
from protocol.handle import normalise
from protocol.keys import encode_public_key, public_key_to_jwk
from protocol.valuecodec import decode_values, encode_values
from protocol.values import HandleValue


def sample(node: Node, name: str, labels: dict[str, str] | None = None) -> float:
    """A metric sample of ``node`` (0 when the series does not exist yet)."""
    value = node.metrics.registry.get_sample_value(name, labels or {})
    return value or 0.0


def checks_run(node: Node) -> float:
    return sample(node, "idnode_auth_checks_total", {"outcome": "run"})


async def plant_values(url: str, handle: str, values: list[HandleValue]) -> None:
    """Add (or replace, by index) values of ``handle``'s record in the database directly,
    bypassing every write rule."""
    conn = await asyncpg.connect(url)
    try:
        raw = await conn.fetchval(
            'SELECT "values" FROM handles WHERE handle_key = $1', normalise(handle)
        )
        assert raw is not None, f"{handle} does not exist"
        indexes = {v.index for v in values}
        kept = [v for v in decode_values(raw) if v.index not in indexes]
        out = sorted([*kept, *values], key=lambda v: v.index)
        await conn.execute(
            'UPDATE handles SET "values" = $2 WHERE handle_key = $1',
            normalise(handle),
            encode_values(tuple(out)),
        )
    finally:
        await conn.close()


_MODULUS: dict[int, int] = {}


def exponent_bomb(bits: int = 3072, exponent_bits: int = 3070) -> rsa.RSAPublicKey:
    """An RSA public key whose exponent has ``exponent_bits`` bits (a verification costs
    a private-key operation: the finding's cost bomb)."""
    if bits not in _MODULUS:
        _MODULUS[bits] = (
            rsa.generate_private_key(public_exponent=65537, key_size=bits)
            .public_key()
            .public_numbers()
            .n
        )
    e = secrets.randbits(exponent_bits) | 1 | (1 << (exponent_bits - 1))
    return rsa.RSAPublicNumbers(e, _MODULUS[bits]).public_key()


def bomb_value(index: int) -> HandleValue:
    return HandleValue(index, "HS_PUBKEY", encode_public_key(exponent_bomb()))


def jwk_json(key: Any) -> str:
    return json.dumps(public_key_to_jwk(key))
