"""HTTPS and client-certificate authentication with a throwaway PKI (``pki.py``): the
HTTP port serves TLS only, client certificates are asked for (not required) and verified
against ``tls_client_ca_file``, and one naming an admin whose HS_PUBKEY is its key
authenticates requests that send ``Authorization: Handle clientCert="true"``."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from node.app import Node
from node.settings import SettingsError
from tests.node.challenge_support import answer, new_key, pubkey_value, session_header
from tests.node.http_support import (
    A_HANDLE,
    A,
    Api,
    B,
    StartNode,
    admin_of,
    history_of,
    url_value,
)
from tests.node.pki_support import Pki

CLIENT_CERT = {"Authorization": 'Handle clientCert="true"'}


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki.create(tmp_path / "pki")


async def _tls_node(start: StartNode, pki: Pki, *, client_ca: bool = True, **flags: Any) -> Node:
    cert, key = pki.server()
    tls = {"tls_cert_file": str(cert), "tls_key_file": str(key)}
    if client_ca:
        tls["tls_client_ca_file"] = str(pki.ca_file)
    return await start(**tls, **flags)


@asynccontextmanager
async def https(node: Node, pki: Pki, cert: Path | None = None) -> AsyncIterator[Api]:
    connector = aiohttp.TCPConnector(ssl=pki.client_context(cert))
    async with aiohttp.ClientSession(connector=connector) as session:
        yield Api(session, f"https://127.0.0.1:{node.http_port}")


def _failures(node: Node, reason: str) -> float | None:
    return node.metrics.registry.get_sample_value(
        "idnode_auth_failures_total", {"front": "http", "reason": reason}
    )


async def test_https_only_on_the_http_port(start_http_node: StartNode, pki: Pki) -> None:
    node = await _tls_node(start_http_node, pki, client_ca=False)
    async with https(node, pki) as api:
        r = await api.get("/api/handles/" + A_HANDLE)
        assert r.status == 200 and r.json["handle"] == A_HANDLE
        r = await api.get("/api/handles/88.118.2/ADMIN", headers=admin_of(A))  # Basic over TLS
        assert 300 in [v["index"] for v in r.json["values"]]
        r = await api.put("/api/handles/88.118.2/X", [url_value(1, "u")], headers=CLIENT_CERT)
        assert r.status == 403 and "tls_client_ca_file" in r.json["message"]  # not asked for
    async with aiohttp.ClientSession() as plain:
        with pytest.raises(aiohttp.ClientError):
            async with plain.get(f"http://127.0.0.1:{node.http_port}/api/prefixes") as resp:
                await resp.read()
    assert node.site is not None
    http = [i for i in node.site.info.servers[0].interfaces if i.port == node.http_port]
    assert [i.protocol for i in http] == [3]  # HS_SITE advertises HTTPS


async def test_client_certificate_authenticates_its_admin(
    start_http_node: StartNode, pki: Pki, database_url: str
) -> None:
    node = await _tls_node(start_http_node, pki)
    key_a, key_b = new_key("ec"), new_key("rsa")
    async with https(node, pki) as api:  # each enterprise publishes its key (Basic, over TLS)
        for prefix, key, ent in (("88.118.2", key_a, A), ("88.118.3", key_b, B)):
            r = await api.put(
                f"/api/handles/{prefix}/ADMIN?index=300", [pubkey_value(key)], headers=admin_of(ent)
            )
            assert r.status == 200, r.text
    cert_a = pki.client("300:88.118.2/ADMIN", key_a)
    cert_b = pki.client("88.118.3/ADMIN", key_b, uid=True)  # UID, no index: found by key
    async with https(node, pki, cert_a) as api:
        r = await api.put("/api/handles/88.118.2/BY-CERT", [url_value(1, "u")], headers=CLIENT_CERT)
        assert r.status == 200, r.text
        assert (await history_of(database_url, "88.118.2/BY-CERT"))[-1] == (
            "create",
            "300:88.118.2/ADMIN",
        )
        r = await api.put("/api/handles/88.118.2/NO-HEADER", [url_value(1, "u")])
        assert r.status == 401  # a certificate is used only when the request asks for it
        r = await api.get("/api/sessions/this", headers=CLIENT_CERT)
        assert r.json == {"authenticated": True, "id": "300:88.118.2/ADMIN"}
        s = (
            await api.post("/api/sessions", headers=CLIENT_CERT)
        ).json  # a session from the certificate
        assert s["authenticated"] is True and s["id"] == "300:88.118.2/ADMIN"
    async with https(node, pki) as api:  # the session works without the certificate
        r = await api.put(
            "/api/handles/88.118.2/BY-CERT-SESSION",
            [url_value(1, "u")],
            headers=session_header(s["sessionId"]),
        )
        assert r.status == 200
        r = await api.put("/api/handles/88.118.2/X", [url_value(1, "u")], headers=CLIENT_CERT)
        assert r.status == 401 and _failures(node, "no_client_cert") == 1
    async with https(node, pki, cert_b) as api:
        r = await api.put("/api/handles/88.118.2/BY-B", [url_value(1, "u")], headers=CLIENT_CERT)
        assert (r.status, r.json["responseCode"]) == (403, 400)  # B's admin on A's prefix
        r = await api.put("/api/handles/88.118.3/BY-B", [url_value(1, "u")], headers=CLIENT_CERT)
        assert r.status == 200
        assert (await history_of(database_url, "88.118.3/BY-B"))[-1] == (
            "create",
            "300:88.118.3/ADMIN",
        )


async def test_certificate_key_must_be_the_admins_hs_pubkey(
    start_http_node: StartNode, pki: Pki
) -> None:
    """CA-signed is not enough: as the reference, the key must be an HS_PUBKEY value of
    the admin the subject names."""
    node = await _tls_node(start_http_node, pki)
    for name in ("300:88.118.2/ADMIN", "300:88.118.2/NOBODY", "300:"):
        async with https(node, pki, pki.client(name, new_key("ec"))) as api:
            r = await api.put("/api/handles/88.118.2/X", [url_value(1, "u")], headers=CLIENT_CERT)
            assert (r.status, r.json["responseCode"]) == (401, 403), r.text
    assert _failures(node, "cert_key_mismatch") == 1
    assert _failures(node, "unknown_admin") == 1
    assert _failures(node, "no_cert_identity") == 1


async def test_certificate_from_another_ca_fails_the_handshake(
    start_http_node: StartNode, pki: Pki, tmp_path: Path
) -> None:
    node = await _tls_node(start_http_node, pki)
    rogue = Pki.create(tmp_path / "rogue").client("300:88.118.2/ADMIN", new_key("ec"))
    self_signed = pki.client("300:88.118.2/ADMIN", new_key("ec"), self_signed=True)
    for cert in (rogue, self_signed):
        async with https(node, pki, cert) as api:
            with pytest.raises((aiohttp.ClientError, ssl.SSLError)):
                await api.session.get(api.url("/api/handles/" + A_HANDLE))
    async with https(node, pki) as api:  # the node is unharmed; no certificate is fine
        assert (await api.get("/api/handles/" + A_HANDLE)).status == 200


async def test_session_challenge_over_https_with_plain_http_refused(
    start_http_node: StartNode, pki: Pki
) -> None:
    node = await _tls_node(start_http_node, pki, http_plain_credentials="refuse")
    key = new_key("rsa")
    async with https(node, pki) as api:
        assert (
            await api.put(
                "/api/handles/88.118.2/ADMIN?index=300", [pubkey_value(key)], headers=admin_of(A)
            )
        ).status == 200
        s = (await api.post("/api/sessions")).json
        r = await api.put("/api/sessions/this", headers=answer(s, "300:88.118.2/ADMIN", key))
        assert r.status == 200 and r.json["authenticated"] is True


@pytest.mark.parametrize(
    "which, message",
    [
        ("missing-cert", "tls_cert_file '{d}/missing.pem' cannot be read"),
        ("wrong-key", "are not a PEM certificate and its unencrypted private key"),
        ("bad-ca", "tls_client_ca_file '{d}/garbage.pem' holds no PEM CA certificate"),
    ],
)
async def test_bad_tls_files_stop_the_start(
    start_http_node: StartNode, pki: Pki, which: str, message: str
) -> None:
    d = pki.directory
    cert, key = pki.server()
    (d / "garbage.pem").write_text("not a certificate\n")
    other_key = pki.client("x", new_key("ec")).with_suffix(".key")
    flags = {"tls_cert_file": str(cert), "tls_key_file": str(key)}
    if which == "missing-cert":
        flags["tls_cert_file"] = str(d / "missing.pem")
    elif which == "wrong-key":
        flags["tls_key_file"] = str(other_key)
    else:
        flags["tls_client_ca_file"] = str(d / "garbage.pem")
    with pytest.raises(SettingsError) as info:
        await start_http_node(**flags)
    assert message.format(d=d) in str(info.value)
