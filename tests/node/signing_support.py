"""Shared pieces of the signed-record tests: verify a record the way a partner would,
from the node's own records, and tamper with it in PostgreSQL behind the node's back."""

from __future__ import annotations

import time
from typing import Any

import asyncpg

from node.app import Node
from node.resolution.outcomes import Found
from node.signing.trust import collect_certs
from protocol.handle import parse_handle
from protocol.recordsig import Verification, verify_record
from protocol.valuecodec import decode_values, encode_values
from protocol.values import HandleValue
from tests.node.http_support import A, Api, admin_of, admin_value, url_value

H = "88.118.2/SIGNED-1"


async def fetch_local(node: Node, handle: str) -> tuple[HandleValue, ...] | None:
    assert node.resolver is not None
    found = await node.resolver.resolve(handle, public_only=True)
    return found.values if isinstance(found, Found) else None


async def verify_on(node: Node, handle: str, now: int | None = None) -> Verification:
    values = await fetch_local(node, handle)
    assert values is not None, handle
    certs = await collect_certs(values, lambda h: fetch_local(node, h))
    assert node.signer is not None and node.signer.root_public is not None
    return verify_record(
        handle, values, certs=certs, roots=[node.signer.root_public], now=now or int(time.time())
    )


async def rewrite_in_pg(url: str, handle: str, change: Any) -> None:
    """Change the stored record behind the node's back (as a compromised DB would)."""
    key = parse_handle(handle).key
    conn = await asyncpg.connect(url)
    try:
        raw = await conn.fetchval('SELECT "values" FROM handles WHERE handle_key = $1', key)
        values = tuple(change(list(decode_values(raw))))
        await conn.execute(
            'UPDATE handles SET "values" = $2 WHERE handle_key = $1', key, encode_values(values)
        )
    finally:
        await conn.close()


async def put_signed(api: Api) -> None:
    rec = [
        admin_value("88.118.2"),
        url_value(1, "https://example.com/a"),
        url_value(2, "https://example.com/b"),
    ]
    assert (await api.put(f"/api/handles/{H}", rec, headers=admin_of(A))).status in (200, 201)
