"""Codecs of the structured value types: HS_ADMIN, HS_VLIST and HS_SITE (RFC 3651 §3.2).

Layouts are those the reference (CNRI Handle.Net 9.x, ``Encoder.encodeAdminRecord`` /
``encodeValueReferenceList`` / ``encodeSiteInfoRecord``) writes; every decoder reads
through the bounded ``Reader`` and insists on consuming exactly the bytes it was given,
so decode followed by encode reproduces the input byte for byte.
"""

from __future__ import annotations

import enum
import hashlib
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .errors import LocalProtocolError, RemoteProtocolError, ValueFormatError
from .values import Reference
from .wirebase import Reader, Writer

ADDRESS_BYTES = 16
SITE_FORMAT_VERSION = 1
FLAG_PRIMARY = 0x80
FLAG_MULTI_PRIMARY = 0x40


class HashOption(enum.IntEnum):
    """How a multi-server site picks the server responsible for a handle."""

    BY_PREFIX = 0
    BY_SUFFIX = 1
    BY_HANDLE = 2


class InterfaceType(enum.IntFlag):
    OUT_OF_SERVICE = 0
    ADMIN = 1
    QUERY = 2
    BOTH = 3


class InterfaceProtocol(enum.IntEnum):
    UDP = 0
    TCP = 1
    HTTP = 2
    HTTPS = 3


def _check_range(value: int, bits: int, what: str) -> None:
    if not 0 <= value < (1 << bits):
        raise LocalProtocolError(f"{what} {value} does not fit in {bits} bits")


def _write_text(w: Writer, text: str, what: str) -> None:
    try:
        w.utf8(text)
    except UnicodeEncodeError:
        raise LocalProtocolError(f"{what} is not encodable as UTF-8") from None


def _finish(r: Reader, what: str) -> None:
    if not r.at_end():
        raise RemoteProtocolError(f"{r.remaining()} unexpected trailing bytes after {what}")


# --- HS_ADMIN -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AdminRef:
    """HS_ADMIN data: u16 permission bits, admin handle (UTF-8 string), u32 index."""

    handle: str
    index: int
    permissions: int  # AdminPerm bits (protocol.codes.AdminPerm)
    # Servers up to 7.3 wrote two extra zero bytes after the index; the reference still
    # reads such records and writes them back the same way ("legacyByteLength").
    legacy_byte_length: bool = False


def encode_admin(a: AdminRef) -> bytes:
    _check_range(a.permissions, 16, "admin permissions")
    _check_range(a.index, 32, "admin index")
    w = Writer()
    w.u16(a.permissions)
    _write_text(w, a.handle, "admin handle")
    w.u32(a.index)
    if a.legacy_byte_length:
        w.u16(0)
    return w.getvalue()


def decode_admin(data: bytes | memoryview) -> AdminRef:
    r = Reader(data)
    permissions = r.u16("admin permissions")
    handle = r.utf8("admin handle")
    index = r.u32("admin index")
    legacy = r.remaining() == 2
    if legacy and r.raw(2, "legacy admin padding") != b"\0\0":
        raise RemoteProtocolError("2 unexpected non-zero trailing bytes after HS_ADMIN data")
    _finish(r, "HS_ADMIN data")
    return AdminRef(handle, index, permissions, legacy)


# --- HS_VLIST -------------------------------------------------------------------------


def encode_vlist(refs: Sequence[Reference]) -> bytes:
    """u32 count + (handle UTF-8 string + u32 index) each."""
    w = Writer()
    w.u32(len(refs))
    for ref in refs:
        _write_text(w, ref.handle, "HS_VLIST handle")
        _check_range(ref.index, 32, "HS_VLIST index")
        w.u32(ref.index)
    return w.getvalue()


def decode_vlist(data: bytes | memoryview) -> tuple[Reference, ...]:
    r = Reader(data)
    n = r.count("HS_VLIST references", 8)
    refs = tuple(Reference(r.utf8("HS_VLIST handle"), r.u32("HS_VLIST index")) for _ in range(n))
    _finish(r, "HS_VLIST data")
    return refs


# --- HS_SITE --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Interface:
    type: int  # InterfaceType: 1 admin, 2 query, 3 both (0 out of service)
    protocol: int  # InterfaceProtocol: 0 UDP, 1 TCP, 2 HTTP, 3 HTTPS
    port: int

    @property
    def serves_queries(self) -> bool:
        return bool(self.type & InterfaceType.QUERY)

    @property
    def serves_admin(self) -> bool:
        return bool(self.type & InterfaceType.ADMIN)


@dataclass(frozen=True, slots=True)
class ServerInfo:
    server_id: int
    # 16 bytes; an IPv4 address sits in the last 4 behind 12 zero bytes, as the reference
    # writes it (not the ::ffff: mapped form).
    address: bytes
    public_key: bytes  # Handle key format (protocol.keys), may be empty
    interfaces: tuple[Interface, ...]

    @property
    def ip(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        """The reference's ``ServerInfo.isIPv4`` rule: 12 leading zero bytes mean IPv4."""
        if len(self.address) != ADDRESS_BYTES:
            raise LocalProtocolError(f"server {self.server_id} address is not 16 bytes")
        if not any(self.address[:12]):
            return ipaddress.IPv4Address(self.address[12:])
        return ipaddress.IPv6Address(self.address)

    @classmethod
    def for_address(
        cls,
        server_id: int,
        ip: str | ipaddress.IPv4Address | ipaddress.IPv6Address,
        public_key: bytes,
        interfaces: Iterable[Interface],
    ) -> ServerInfo:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            raise LocalProtocolError(
                f"server {server_id} address {ip!r} is not an IP address"
            ) from None
        packed = addr.packed.rjust(ADDRESS_BYTES, b"\0")
        return cls(server_id, packed, bytes(public_key), tuple(interfaces))

    def find_interface(self, protocol: int, *, admin: bool = False) -> Interface | None:
        for intf in self.interfaces:
            if intf.protocol == protocol and (intf.serves_admin if admin else intf.serves_queries):
                return intf
        return None


# u32 id + 16-byte address + u32 key length + u32 interface count
_MIN_SERVER_BYTES = 4 + ADDRESS_BYTES + 4 + 4
_MIN_INTERFACE_BYTES = 1 + 1 + 4


@dataclass(frozen=True, slots=True)
class SiteInfo:
    serial: int
    servers: tuple[ServerInfo, ...]
    data_version: int = SITE_FORMAT_VERSION
    major: int = 2
    minor: int = 10
    primary: bool = True  # flags 0x80
    multi_primary: bool = False  # flags 0x40
    hash_option: int = HashOption.BY_HANDLE
    hash_filter: str = ""
    attributes: tuple[tuple[str, str], ...] = ()

    def to_wire(self) -> bytes:
        _check_range(self.data_version, 16, "site data format version")
        _check_range(self.major, 8, "site major version")
        _check_range(self.minor, 8, "site minor version")
        _check_range(self.serial, 16, "site serial")
        _check_range(self.hash_option, 8, "site hash option")
        w = Writer()
        w.u16(self.data_version)
        w.u8(self.major)
        w.u8(self.minor)
        w.u16(self.serial)
        w.u8(
            (FLAG_PRIMARY if self.primary else 0)
            | (FLAG_MULTI_PRIMARY if self.multi_primary else 0)
        )
        w.u8(self.hash_option)
        _write_text(w, self.hash_filter, "site hash filter")
        w.u32(len(self.attributes))
        for name, value in self.attributes:
            _write_text(w, name, "site attribute name")
            _write_text(w, value, f"site attribute {name!r}")
        w.u32(len(self.servers))
        for server in self.servers:
            _check_range(server.server_id, 32, "server id")
            if len(server.address) != ADDRESS_BYTES:
                raise LocalProtocolError(f"server {server.server_id} address is not 16 bytes")
            w.u32(server.server_id)
            w.raw(server.address)
            w.blob(server.public_key)
            w.u32(len(server.interfaces))
            for intf in server.interfaces:
                _check_range(intf.type, 8, "interface type")
                _check_range(intf.protocol, 8, "interface protocol")
                _check_range(intf.port, 32, "interface port")
                w.u8(intf.type)
                w.u8(intf.protocol)
                w.u32(intf.port)
        return w.getvalue()

    @classmethod
    def from_wire(cls, data: bytes | memoryview) -> SiteInfo:
        r = Reader(data)
        data_version = r.u16("site data format version")
        major = r.u8("site major version")
        minor = r.u8("site minor version")
        serial = r.u16("site serial")
        flags = r.u8("site flags")
        hash_option = r.u8("site hash option")
        hash_filter = r.utf8("site hash filter")
        n_attrs = r.count("site attributes", 8)
        attributes = tuple(
            (r.utf8("site attribute name"), r.utf8("site attribute value")) for _ in range(n_attrs)
        )
        n_servers = r.count("site servers", _MIN_SERVER_BYTES)
        servers = []
        for _ in range(n_servers):
            server_id = r.u32("server id")
            address = r.raw(ADDRESS_BYTES, "server address")
            public_key = r.blob("server public key")
            n_intf = r.count("server interfaces", _MIN_INTERFACE_BYTES)
            interfaces = tuple(
                Interface(
                    r.u8("interface type"), r.u8("interface protocol"), r.u32("interface port")
                )
                for _ in range(n_intf)
            )
            servers.append(ServerInfo(server_id, address, public_key, interfaces))
        _finish(r, "HS_SITE data")
        return cls(
            serial=serial,
            servers=tuple(servers),
            data_version=data_version,
            major=major,
            minor=minor,
            primary=bool(flags & FLAG_PRIMARY),
            multi_primary=bool(flags & FLAG_MULTI_PRIMARY),
            hash_option=hash_option,
            hash_filter=hash_filter,
            attributes=attributes,
        )

    def server_for(self, handle: str) -> ServerInfo:
        """The server of this site responsible for ``handle`` (reference
        ``SiteInfo.determineServerNum``)."""
        if not self.servers:
            raise ValueFormatError("site lists no servers")
        return self.servers[handle_hash(handle, self.hash_option) % len(self.servers)]


_ASCII_UPPER = bytes.maketrans(b"abcdefghijklmnopqrstuvwxyz", b"ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def handle_hash(handle: str, hash_option: int) -> int:
    """Reference ``SiteInfo.getHandleHash``: MD5 of the ASCII-upper-cased prefix, suffix
    or whole handle; the digest's last 4 bytes as a signed big-endian int; its absolute
    value. A handle without '/' hashes as prefix "0.NA" / suffix = the whole handle.

    Java's ``Math.abs(Integer.MIN_VALUE)`` stays negative (and the reference then fails
    indexing its server array); we return 2**31 there instead, a 1-in-2**32 case.
    """
    raw = handle.encode("utf-8", "surrogatepass")
    prefix, slash, suffix = raw.partition(b"/")
    if hash_option == HashOption.BY_PREFIX:
        part = prefix if slash else b"0.NA"
    elif hash_option == HashOption.BY_SUFFIX:
        part = suffix if slash else raw
    elif hash_option == HashOption.BY_HANDLE:
        part = raw
    else:
        raise ValueFormatError(f"unknown site hash option {hash_option}")
    digest = hashlib.md5(part.translate(_ASCII_UPPER), usedforsecurity=False).digest()
    return abs(int.from_bytes(digest[-4:], "big", signed=True))
