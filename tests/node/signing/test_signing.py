"""Signed records on a real node (docs/signing.md, node.signing.signer): every write is signed in the
same transaction, tampering in PostgreSQL shows, the chain is published in 0.NA/<prefix>,
``idnode verify`` works over HTTP and native, and no private key material leaks."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from node.app import Node
from node.demo.dataset import demo_dataset
from node.signing.trust import public_pem
from protocol.handle import parse_handle
from protocol.jose import SigningKey, b64url_encode
from protocol.jsonvalues import values_from_json
from protocol.recordsig import HS_SIGNATURE
from protocol.values import HandleValue
from tests.node.http_support import (
    A,
    Api,
    admin_of,
    admin_value,
    url_value,
)
from tests.node.process_support import run_idnode
from tests.node.signing_support import H, fetch_local, put_signed, rewrite_in_pg, verify_on


async def test_every_demo_record_verifies(http_node: Node) -> None:
    for demo in demo_dataset().handles:
        report = await verify_on(http_node, demo.handle)
        assert report.ok, report.render()
        assert report.signature_index == 400


async def test_prefix_record_publishes_the_chain(http_node: Node) -> None:
    values = await fetch_local(http_node, "0.NA/88.118")
    assert values is not None
    assert [v.index for v in values if v.type == "HS_CERT"] == [400, 401]


async def test_signed_before_stamping_and_tamper_detection(
    http_node: Node, api: Api, database_url: str
) -> None:
    await put_signed(api)
    assert (await verify_on(http_node, H)).ok  # timestamps set by the registry after signing

    # Only a timestamp changes: still valid (digests skip index and timestamp).
    await rewrite_in_pg(
        database_url, H, lambda vs: [replace(v, timestamp=v.timestamp + 999) for v in vs]
    )
    assert (await verify_on(http_node, H)).ok

    # An uncovered public value added directly: reported as such.
    await rewrite_in_pg(
        database_url, H, lambda vs: [*vs, HandleValue(7, "URL", b"https://evil.example")]
    )
    report = await verify_on(http_node, H)
    assert not report.ok and report.uncovered == (7,)

    # One value's data changed: names that value.
    await rewrite_in_pg(
        database_url,
        H,
        lambda vs: [
            replace(v, data=b"https://evil.example/b") if v.index == 2 else v
            for v in vs
            if v.index != 7
        ],
    )
    report = await verify_on(http_node, H)
    assert not report.ok and report.mismatched == (2,)
    assert "value 2 URL: mismatched" in report.render()


async def test_idempotent_create_and_value_removal_stay_signed(http_node: Node) -> None:
    assert http_node.writes is not None
    handle = parse_handle(H)
    values = values_from_json(
        [admin_value("88.118.2"), url_value(1, "https://x.example"), url_value(2, "y")]
    )
    first = await http_node.writes.put(
        handle, values, actor="t", now=datetime.now(UTC), source="test", overwrite=False
    )
    later = datetime.fromtimestamp(time.time() + 60, UTC)  # a new signature would differ in iat
    again = await http_node.writes.put(
        handle, values, actor="t", now=later, source="test", overwrite=False
    )
    assert first.changed and not again.changed
    assert again.record.version == first.record.version
    record = await http_node.writes.delete(
        handle, actor="t", now=later, source="test", indexes=frozenset({2})
    )
    assert record is not None and sorted(v.index for v in record.values) == [1, 100, 400]
    report = await verify_on(http_node, H)
    assert report.ok, report.render()


async def test_cli_verify_over_http_and_native(
    http_node: Node, api: Api, database_url: str, tmp_path: Path
) -> None:
    await put_signed(api)
    assert http_node.signer is not None and http_node.signer.root_public is not None
    root = tmp_path / "root.pem"
    root.write_text(public_pem(http_node.signer.root_public))

    async def verify(via: str, *extra: str) -> Any:
        port = http_node.http_port if via == "http" else http_node.handle_port
        return await asyncio.to_thread(
            run_idnode, "verify", H, "--via", via, "--server", f"127.0.0.1:{port}", *extra
        )

    good_http = await verify("http", "--root", str(root))
    assert good_http.returncode == 0, good_http.stdout + good_http.stderr
    assert "VALID" in good_http.stdout
    # Default root: the embedded root key of the node's data directory.
    good_native = await verify("native", "--data-dir", str(http_node.settings.data_dir))
    assert good_native.returncode == 0, good_native.stdout + good_native.stderr

    await rewrite_in_pg(
        database_url,
        H,
        lambda vs: [replace(v, data=b"https://evil.example") if v.index == 1 else v for v in vs],
    )
    for via in ("http", "native"):
        bad = await verify(via, "--root", str(root))
        assert bad.returncode != 0
        assert "value 1 URL: mismatched" in bad.stdout, bad.stdout + bad.stderr


def _d(key: SigningKey) -> str:
    private = key.private_key
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    return b64url_encode(private.private_numbers().private_value.to_bytes(32, "big"))


async def test_private_key_material_never_leaks(
    start_http_node: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    node = await start_http_node(log_level="debug")
    assert node.signer is not None and node.signer.root_key is not None
    seen: list[str] = []
    async with aiohttp.ClientSession() as session:
        base = f"http://127.0.0.1:{node.http_port}"
        api = Api(session, base)
        await put_signed(api)
        for path in (f"/api/handles/{H}", "/api/handles/0.NA/88.118", f"/{H}?noredirect"):
            async with session.get(base + path) as reply:
                seen.append(await reply.text())
        async with session.get(f"http://127.0.0.1:{node.admin_port}/metrics") as reply:
            seen.append(await reply.text())
    seen.append(caplog.text)
    seen.append(repr(node.signer))
    passphrase = (node.settings.data_dir / "keys.passphrase").read_text().strip()
    for secret in ("PRIVATE KEY", passphrase, _d(node.signer.key), _d(node.signer.root_key)):
        for text in seen:
            assert secret not in text
    assert HS_SIGNATURE in seen[0]  # the record was served, signed


async def test_a_record_too_large_to_sign_is_refused(api: Api, database_url: str) -> None:
    rec = [admin_value("88.118.2"), *(url_value(i, "u") for i in range(1000, 1999))]  # 1000 values
    r = await api.put("/api/handles/88.118.2/BIG", rec, headers=admin_of(A))
    assert r.status == 400 and "cannot be signed" in r.json["message"], r.text
    assert (await api.get("/api/handles/88.118.2/BIG")).status == 404


async def test_a_record_without_public_values_is_not_signed(http_node: Node, api: Api) -> None:
    private = {**url_value(1, "https://internal.example"), "permissions": "1100"}
    admin = {**admin_value("88.118.2"), "permissions": "1100"}
    assert (
        await api.put("/api/handles/88.118.2/PRIVATE", [admin, private], headers=admin_of(A))
    ).status == 200
    assert http_node.db is not None
    record = await http_node.db.registry.get_handle(parse_handle("88.118.2/PRIVATE").key)
    assert record is not None and not any(v.type == HS_SIGNATURE for v in record.values)
