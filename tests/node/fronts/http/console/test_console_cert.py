"""Console login with a key, the way a browser holds one: the TLS client certificate,
whose key is an HS_PUBKEY value of the admin it names (node.auth.clientcert). Over TLS
the login page offers it; asked for, it makes a session like a secret does; without a
certificate, or over plain HTTP, there is no such login."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from node.app import Node
from node.fronts.http.console.login import login_page
from tests.node.challenge_support import new_key, pubkey_value
from tests.node.console_support import ROLES, ConsoleClient
from tests.node.http_support import A, StartNode, admin_of
from tests.node.pki_support import Pki

CERT_BUTTON = "Log in with your client certificate"


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki.create(tmp_path / "pki")


async def tls_node(start_http_node: StartNode, pki: Pki) -> Node:
    cert, key = pki.server()
    return await start_http_node(
        tls_cert_file=str(cert),
        tls_key_file=str(key),
        tls_client_ca_file=str(pki.ca_file),
        **ROLES,
    )


async def test_an_admin_logs_in_with_the_key_of_its_client_certificate(
    start_http_node: StartNode, pki: Pki
) -> None:
    node = await tls_node(start_http_node, pki)
    key = new_key("ec")
    base = f"https://127.0.0.1:{node.http_port}"
    # The enterprise publishes its admin's key (HS_PUBKEY at index 300), over TLS.
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=pki.client_context())) as s,
        s.put(
            f"{base}/api/handles/88.118.2/ADMIN?index=300",
            json=[pubkey_value(key)],
            headers=admin_of(A),
        ) as r,
    ):
        assert r.status == 200, await r.text()
    holder = ConsoleClient(node, tls=pki.client_context(pki.client("300:88.118.2/ADMIN", key)))
    stranger = ConsoleClient(node, tls=pki.client_context())  # no certificate
    try:
        page = await holder.get("/console/login?lang=en")
        assert page.status == 200 and CERT_BUTTON in page.text
        logged = await holder.post("/console/login", {"method": "cert", "lang": "en"})
        assert logged.status == 303, logged.text
        assert "Secure" in logged.headers["Set-Cookie"]  # over TLS
        prefixes = await holder.get("/console/prefixes?lang=en")
        assert prefixes.status == 200 and "300:88.118.2/ADMIN" in prefixes.text
        assert "88.118.3" not in prefixes.text  # its own enterprise only
        refused = await stranger.post("/console/login", {"method": "cert", "lang": "en"})
        assert refused.status == 401 and "Login failed" in refused.text
        assert "Set-Cookie" not in refused.headers
        assert (await stranger.get("/console/prefixes")).status == 303  # to the login page
    finally:
        await holder.close()
        await stranger.close()


def test_plain_http_offers_no_certificate_login() -> None:
    assert CERT_BUTTON not in login_page("en", cert=False)
    assert CERT_BUTTON in login_page("en", cert=True)


async def test_the_login_page_over_plain_http_has_no_certificate_button(
    start_http_node: StartNode,
) -> None:
    node = await start_http_node(**ROLES)
    client = ConsoleClient(node)
    try:
        page = await client.get("/console/login?lang=en")
        assert page.status == 200 and CERT_BUTTON not in page.text
        # Asked for anyway: no certificate over plain HTTP, so no session.
        refused = await client.post("/console/login", {"method": "cert", "lang": "en"})
        assert refused.status in (401, 403) and "Set-Cookie" not in refused.headers
    finally:
        await client.close()
