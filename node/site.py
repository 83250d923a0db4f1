"""This node as a Handle site: its key, its HS_SITE, and the ``0.NA/<prefix>`` records
resolvers use to find it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from protocol.codes import ALL_ADMIN_PERMS, DEFAULT_PERMISSIONS
from protocol.keys import encode_public_key
from protocol.structured import (
    AdminRef,
    Interface,
    InterfaceProtocol,
    InterfaceType,
    ServerInfo,
    SiteInfo,
    encode_admin,
)
from protocol.values import HandleValue

from .settings import Settings

SERVER_ID = 1
SITE_INDEX = 1
ADMIN_INDEX = 100
# Enterprise prefixes keep their admin secret at <prefix>/ADMIN index 300 (docs/idis.md
# index conventions); a configured prefix without an owner is administered through its
# own prefix record, as the reference does (200:0.NA/<prefix>).
ENTERPRISE_ADMIN_INDEX = 300


class SiteKeyError(Exception):
    """The site key file cannot be read or created."""


def load_or_create_site_key(path: Path) -> rsa.RSAPrivateKey:
    """RSA-2048, the key type every Handle client can verify; made on first start with
    mode 0600 (the file holds the site's private key)."""
    if path.exists():
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise SiteKeyError(f"site key {path} is readable by others (mode {mode:o}); chmod 600 it")
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (ValueError, TypeError) as exc:
            raise SiteKeyError(f"site key {path} is not an unencrypted PEM private key: {exc}") from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise SiteKeyError(f"site key {path} is not an RSA key")
        return key
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return key


def build_site_info(
    settings: Settings, public_key: bytes, *, handle_port: int, http_port: int | None
) -> SiteInfo:
    """One primary server: native TCP (admin + query), UDP (query) and the HTTP API."""
    interfaces = [
        Interface(InterfaceType.BOTH, InterfaceProtocol.TCP, handle_port),
        Interface(InterfaceType.QUERY, InterfaceProtocol.UDP, handle_port),
    ]
    if http_port is not None:
        # The HTTP port speaks TLS only when it is configured (node.tls): say which.
        http = InterfaceProtocol.HTTPS if settings.tls_cert_file is not None else InterfaceProtocol.HTTP
        interfaces.append(Interface(InterfaceType.BOTH, http, http_port))
    server = ServerInfo.for_address(SERVER_ID, settings.advertised_address, public_key, interfaces)
    return SiteInfo(serial=settings.site_serial, servers=(server,))


@dataclass(frozen=True)
class Site:
    info: SiteInfo
    key: rsa.RSAPrivateKey

    @classmethod
    def create(
        cls, settings: Settings, *, handle_port: int, http_port: int | None
    ) -> Site:
        key = load_or_create_site_key(settings.site_key_path)
        pub = encode_public_key(key.public_key())
        return cls(build_site_info(settings, pub, handle_port=handle_port, http_port=http_port), key)

    def with_ports(self, settings: Settings, *, handle_port: int, http_port: int | None) -> Site:
        """The same site once its ports are known (port 0 in settings picks free ones)."""
        pub = self.info.servers[0].public_key
        return Site(build_site_info(settings, pub, handle_port=handle_port, http_port=http_port), self.key)

    def prefix_record(self, prefix: str, owned: bool) -> tuple[HandleValue, ...]:
        """The record of ``0.NA/<prefix>`` for a prefix this node serves."""
        admin = (
            AdminRef(f"{prefix}/ADMIN", ENTERPRISE_ADMIN_INDEX, int(ALL_ADMIN_PERMS))
            if owned
            else AdminRef(f"0.NA/{prefix}", 200, int(ALL_ADMIN_PERMS))
        )
        return (
            HandleValue(SITE_INDEX, "HS_SITE", self.info.to_wire(), permissions=int(DEFAULT_PERMISSIONS)),
            HandleValue(ADMIN_INDEX, "HS_ADMIN", encode_admin(admin), permissions=int(DEFAULT_PERMISSIONS)),
        )
