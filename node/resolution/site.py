"""This node as a Handle site: its key, its HS_SITE, and the ``0.NA/<prefix>`` records
resolvers use to find it."""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from node.errors import NodeError
from node.settings import Settings
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
    encode_vlist,
)
from protocol.values import HandleValue, Reference

SERVER_ID = 1
SITE_INDEX = 1
ADMIN_INDEX = 100
# Enterprise prefixes keep their admin secret at <prefix>/ADMIN index 300 (docs/idis.md
# index conventions); a configured prefix without an owner is administered through its
# own prefix record, as the reference does (200:0.NA/<prefix>).
ENTERPRISE_ADMIN_INDEX = 300
# The conventional admin group of a prefix: HS_VLIST at 200:0.NA/<prefix>.
ADMIN_GROUP_INDEX = 200


class SiteKeyError(NodeError):
    """The site key file cannot be read or created."""


def load_or_create_site_key(path: Path) -> rsa.RSAPrivateKey:
    """RSA-2048, the key type every Handle client can verify; made on first start with
    mode 0600 (the file holds the site's private key). Every failure is a SiteKeyError
    naming the file."""
    try:
        return _load_or_create(path)
    except OSError as exc:
        raise SiteKeyError(
            f"site key {path} cannot be read or created: {exc.strerror or exc}"
        ) from None


def _load_or_create(path: Path) -> rsa.RSAPrivateKey:
    if path.exists():
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise SiteKeyError(
                f"site key {path} is readable by others (mode {mode:o}); chmod 600 it"
            )
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (ValueError, TypeError) as exc:
            raise SiteKeyError(
                f"site key {path} is not an unencrypted PEM private key: {exc}"
            ) from None
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


# Documentation addresses (RFC 5737, RFC 3849): a UDP socket "connected" to one learns the
# local address of the outward route without a packet being sent.
_OUTWARD_PROBES = {socket.AF_INET: "192.0.2.1", socket.AF_INET6: "2001:db8::1"}


def site_address(settings: Settings) -> str:
    """The address HS_SITE advertises: ``public_address``; else ``bind`` when it is one
    address; else (bound to every interface) the address of the interface that routes
    outward, which is what a server with one uplink, or a container, is reached at.
    Loopback only when there is no route at all (a laptop offline)."""
    if settings.public_address:
        return settings.public_address
    if settings.bind not in ("0.0.0.0", "::"):
        return settings.bind
    families = (socket.AF_INET6, socket.AF_INET) if settings.bind == "::" else (socket.AF_INET,)
    for family in families:
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as probe:
                probe.connect((_OUTWARD_PROBES[family], 9))
                address = str(probe.getsockname()[0])
        except OSError:
            continue
        if not ipaddress.ip_address(address).is_loopback:
            return address
    return "127.0.0.1"


def build_site_info(
    settings: Settings, public_key: bytes, *, handle_port: int, http_port: int | None
) -> SiteInfo:
    """One primary server: native TCP (admin + query), UDP (query) and the HTTP API."""
    interfaces = [
        Interface(InterfaceType.BOTH, InterfaceProtocol.TCP, handle_port),
        Interface(InterfaceType.QUERY, InterfaceProtocol.UDP, handle_port),
    ]
    if http_port is not None:
        # The HTTP port speaks TLS only when it is configured (node.runtime.tls): say which.
        http = (
            InterfaceProtocol.HTTPS
            if settings.tls_cert_file is not None
            else InterfaceProtocol.HTTP
        )
        interfaces.append(Interface(InterfaceType.BOTH, http, http_port))
    server = ServerInfo.for_address(SERVER_ID, site_address(settings), public_key, interfaces)
    return SiteInfo(serial=settings.site_serial, servers=(server,))


def server_admins(settings: Settings) -> tuple[Reference, ...]:
    """The ``server_admins`` setting (validated ``INDEX:HANDLE`` items) as references."""
    refs = []
    for item in settings.server_admins:
        index, _, handle = item.partition(":")
        refs.append(Reference(handle, int(index)))
    return tuple(refs)


@dataclass(frozen=True)
class Site:
    info: SiteInfo
    key: rsa.RSAPrivateKey
    admins: tuple[Reference, ...] = ()  # the server admins: the group of unowned prefixes

    @classmethod
    def create(cls, settings: Settings, *, handle_port: int, http_port: int | None) -> Site:
        key = load_or_create_site_key(settings.site_key_path)
        pub = encode_public_key(key.public_key())
        info = build_site_info(settings, pub, handle_port=handle_port, http_port=http_port)
        return cls(info, key, server_admins(settings))

    def with_ports(self, settings: Settings, *, handle_port: int, http_port: int | None) -> Site:
        """The same site once its ports are known (port 0 in settings picks free ones)."""
        pub = self.info.servers[0].public_key
        info = build_site_info(settings, pub, handle_port=handle_port, http_port=http_port)
        return Site(info, self.key, self.admins)

    def prefix_record(self, prefix: str, owned: bool) -> tuple[HandleValue, ...]:
        """The record of ``0.NA/<prefix>`` for a prefix this node serves: its HS_SITE, its
        HS_ADMIN, and at index 200 the prefix's admin group (HS_VLIST), which REST
        clients (pyhandle, b2handle) name as the admin of every handle they create
        (``200:0.NA/<prefix>``). An enterprise's prefix is administered by its
        ``<prefix>/ADMIN`` (index 300); a configured prefix without an owner by the
        group itself, whose members are the node's server admins."""
        owner = Reference(f"{prefix}/ADMIN", ENTERPRISE_ADMIN_INDEX)
        members = (owner,) if owned else self.admins
        admin = (
            AdminRef(owner.handle, owner.index, int(ALL_ADMIN_PERMS))
            if owned
            else AdminRef(f"0.NA/{prefix}", ADMIN_GROUP_INDEX, int(ALL_ADMIN_PERMS))
        )
        perms = int(DEFAULT_PERMISSIONS)
        return (
            HandleValue(SITE_INDEX, "HS_SITE", self.info.to_wire(), permissions=perms),
            HandleValue(ADMIN_INDEX, "HS_ADMIN", encode_admin(admin), permissions=perms),
            HandleValue(ADMIN_GROUP_INDEX, "HS_VLIST", encode_vlist(members), permissions=perms),
        )
