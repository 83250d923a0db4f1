"""Handle values in the JSON shape of the Handle.Net REST API (docs/rest-api.md).

Mirrors the reference ``GsonUtility`` (Handle.Net 9.x) where clients can tell: value key
order, ``data`` formats and which one is chosen on output, absolute TTLs as timestamps,
``permissions`` only when not "1110", numeric strings accepted where numbers are due.
Deliberate differences:

- ``timestamp`` is always written (the reference omits it when 0; a widely used client
  pops it without a default), as "1970-01-01T00:00:00Z" for 0.
- A structured format (admin, vlist, site, key) is written only when reading it back
  gives the same bytes; otherwise the data goes out as string/base64. Record signatures
  digest the value bytes, so a JSON round trip must never change them.
- Input is validated strictly; every failure is a ``ValueFormatError`` (RC 202) naming
  the value by index (or by position before the index is known).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import ipaddress
import re
import time
from collections.abc import Iterable, Mapping
from typing import Any, NoReturn

from .codes import DEFAULT_PERMISSIONS, TTLType
from .errors import LocalProtocolError, ProtocolError, ValueFormatError
from .keys import decode_public_key, encode_public_key, public_key_from_jwk, public_key_to_jwk
from .structured import (
    AdminRef,
    HashOption,
    Interface,
    InterfaceProtocol,
    ServerInfo,
    SiteInfo,
    decode_admin,
    decode_vlist,
    encode_admin,
    encode_vlist,
)
from .valuecodec import check_value
from .values import DEFAULT_TTL_S, HandleValue, Reference

MAX_VALUES_PER_HANDLE = 1000  # documented limit of one record
FORMATS = ("string", "base64", "hex", "admin", "vlist", "site", "key")
_SITE_TYPES = frozenset({"HS_SITE", "HS_SITE.PREFIX", "HS_NA_DELEGATE"})  # as GsonUtility
_U32 = 0xFFFFFFFF
_PERMS_ORDER = "admin-read admin-write public-read public-write"
_NUMERIC = re.compile(r"\s*-?[0-9]{1,20}\s*")
_BINARY_BYTE = re.compile(rb"[\x00-\x08\x14-\x1f\x7f]")


def _fail(where: str, problem: str) -> NoReturn:
    raise ValueFormatError(f"{where}: {problem}")


def _show(obj: Any) -> str:
    """A client's input quoted in an error message, cut short."""
    text = repr(obj)
    return text if len(text) <= 60 else text[:57] + "..."


def _jtype(obj: Any) -> str:
    for kind, name in ((bool, "boolean"), (str, "string"), (Mapping, "object"), (list, "array")):
        if isinstance(obj, kind):
            return name
    return "null" if obj is None else "number" if isinstance(obj, int | float) else "value"


# --- scalar helpers --------------------------------------------------------------------


def _int(obj: Any, where: str, what: str, hi: int = _U32) -> int:
    """An integer 0..hi; numeric strings and integral floats are accepted (the reference
    reads with Gson ``getAsInt``, which takes both)."""
    if isinstance(obj, bool):
        _fail(where, f"{what} must be an integer, not a boolean")
    if isinstance(obj, int):
        n = obj
    elif isinstance(obj, str) and _NUMERIC.fullmatch(obj):
        n = int(obj.strip())
    elif isinstance(obj, float) and obj.is_integer():
        n = int(obj)
    else:
        _fail(where, f"{what} must be an integer, got {_show(obj)}")
    if not 0 <= n <= hi:
        _fail(where, f"{what} {n} is outside 0..{hi}")
    return n


def _text(obj: Any, where: str, what: str) -> str:
    if not isinstance(obj, str):
        _fail(where, f"{what} must be a string, got {_jtype(obj)}")
    try:
        obj.encode("utf-8")
    except UnicodeEncodeError:
        _fail(where, f"{what} is not valid Unicode (lone surrogate)")
    return obj


def _object(obj: Any, where: str, what: str) -> Mapping[str, Any]:
    if not isinstance(obj, Mapping):
        _fail(where, f"{what} must be an object, got {_jtype(obj)}")
    return obj


def _list(obj: Any, where: str, what: str) -> list[Any]:
    if not isinstance(obj, list):
        _fail(where, f"{what} must be an array, got {_jtype(obj)}")
    return obj


def _bool(obj: Any, where: str, what: str) -> bool:
    if not isinstance(obj, bool):
        _fail(where, f"{what} must be true or false, got {_show(obj)}")
    return obj


def format_timestamp(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _parse_timestamp(obj: Any, where: str, what: str) -> int:
    """ISO 8601 (naive means UTC, fractions are dropped) or unix seconds."""
    if not isinstance(obj, str):
        return _int(obj, where, what)
    try:
        when = dt.datetime.fromisoformat(obj.strip())
    except ValueError:
        _fail(where, f"{what} {_show(obj)} is not an ISO 8601 timestamp")
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    seconds = int(when.timestamp())
    if not 0 <= seconds <= _U32:
        _fail(where, f"{what} {_show(obj)} is outside 1970..2106")
    return seconds


def _b64decode(text: str, where: str, what: str) -> bytes:
    """Standard or URL-safe alphabet, padding optional, whitespace ignored (the reference
    uses the lenient commons-codec decoder)."""
    cleaned = "".join(text.split()).rstrip("=").replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), validate=True)
    except (binascii.Error, ValueError):
        _fail(where, f"{what} is not valid base64")


def _reference(obj: Any, where: str, what: str) -> Reference:
    ref = _object(obj, where, what)
    return Reference(
        _text(ref.get("handle"), where, f"{what}.handle"),
        _int(ref.get("index"), where, f"{what}.index"),
    )


def _references(obj: Any, where: str, what: str) -> tuple[Reference, ...]:
    items = _list(obj, where, what)
    return tuple(_reference(item, where, f"{what}[{i}]") for i, item in enumerate(items))


# --- data: JSON -> bytes -------------------------------------------------------------


def _admin_from_json(obj: Any, where: str) -> bytes:
    adm = _object(obj, where, "admin value")
    perms = adm.get("permissions")
    if perms == "*":  # the reference's shorthand for all twelve
        bits = 0xFFF
    elif isinstance(perms, str) and len(perms) == 12 and set(perms) <= {"0", "1"}:
        bits = int(perms, 2)
    else:
        _fail(where, f"admin permissions must be 12 characters of 0/1, got {_show(perms)}")
    legacy = adm.get("legacyByteLength", False)
    ref = AdminRef(
        _text(adm.get("handle"), where, "admin handle"),
        _int(adm.get("index"), where, "admin index"),
        bits,
        _bool(legacy, where, "admin legacyByteLength"),
    )
    return encode_admin(ref)


def _key_from_json(obj: Any, where: str) -> bytes:
    """A JWK (what Handle.Net reads) or, as an extension, base64 of Handle key bytes."""
    if isinstance(obj, str):
        data = _b64decode(obj, where, "key value")
        try:
            decode_public_key(data)
        except ValueFormatError as exc:
            _fail(where, exc.message)
        return data
    try:
        return encode_public_key(public_key_from_jwk(_object(obj, where, "key value")))
    except ValueFormatError as exc:
        _fail(where, exc.message)


def data_from_json(obj: Any, where: str = "value") -> bytes:
    if isinstance(obj, str):
        return _text(obj, where, "data").encode("utf-8")
    if not isinstance(obj, Mapping):
        _fail(where, f"data must be a string or a {{format, value}} object, got {_jtype(obj)}")
    fmt = obj.get("format")
    if not isinstance(fmt, str) or fmt.lower() not in FORMATS:
        _fail(where, f"data.format {_show(fmt)} is not one of {', '.join(FORMATS)}")
    if "value" not in obj:
        _fail(where, "data.value is missing")
    value = obj["value"]
    fmt = fmt.lower()  # the reference compares formats ignoring case
    if fmt == "string":
        return _text(value, where, "data.value").encode("utf-8")
    if fmt == "base64":
        return _b64decode(_text(value, where, "data.value"), where, "data.value")
    if fmt == "hex":
        try:
            return bytes.fromhex(_text(value, where, "data.value"))
        except ValueError:
            _fail(where, "data.value is not valid hex")
    try:
        if fmt == "admin":
            return _admin_from_json(value, where)
        if fmt == "vlist":
            return encode_vlist(_references(value, where, "vlist value"))
        if fmt == "site":
            return site_from_json(value, where).to_wire()
    except LocalProtocolError as exc:
        _fail(where, exc.message)
    return _key_from_json(value, where)


# --- data: bytes -> JSON -------------------------------------------------------------


def _as_text(data: bytes) -> str | None:
    """The data as text, or None when the reference (``Util.looksLikeBinary``) would show
    it as base64: not UTF-8, or a control byte other than 0x09..0x13 (its whitespace
    range, a decimal-13-meant-as-hex slip we keep for identical output)."""
    if _BINARY_BYTE.search(data):
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _plain_json(data: bytes) -> dict[str, Any]:
    text = _as_text(data)
    if text is not None:
        return {"format": "string", "value": text}
    return _b64_json(data)


def _b64_json(data: bytes) -> dict[str, Any]:
    return {"format": "base64", "value": base64.b64encode(data).decode("ascii")}


def _structured_json(vtype: str, data: bytes) -> dict[str, Any] | None:
    try:
        if vtype == "HS_ADMIN":
            adm = decode_admin(data)
            if adm.permissions > 0xFFF:  # bits the 12-character form cannot carry
                return None
            out: dict[str, Any] = {
                "handle": adm.handle,
                "index": adm.index,
                "permissions": format(adm.permissions, "012b"),
            }
            if adm.legacy_byte_length:
                out["legacyByteLength"] = True
            return {"format": "admin", "value": out}
        if vtype == "HS_VLIST":
            refs = decode_vlist(data)
            return {
                "format": "vlist",
                "value": [{"handle": r.handle, "index": r.index} for r in refs],
            }
        if vtype in _SITE_TYPES:
            site = site_to_json(SiteInfo.from_wire(data))
            return None if site is None else {"format": "site", "value": site}
        if vtype == "HS_PUBKEY":
            jwk = _key_json(data)
            return None if jwk is None else {"format": "key", "value": jwk}
    except ProtocolError:
        pass  # a resolver must still show the record: fall back to string/base64
    return None


def _key_json(data: bytes) -> dict[str, str] | None:
    key = decode_public_key(data)
    if encode_public_key(key) != data:  # non-canonical bytes: a JWK would not restore them
        return None
    return public_key_to_jwk(key)


def data_to_json(vtype: str, data: bytes) -> dict[str, Any]:
    return _structured_json(vtype.upper(), data) or _plain_json(data)


# --- site ----------------------------------------------------------------------------

_PROTOCOL_NAMES = {p.value: p.name for p in InterfaceProtocol}


def site_to_json(site: SiteInfo) -> dict[str, Any] | None:
    """Handle.Net's JSON shape of an HS_SITE; None when JSON cannot carry it exactly
    (an interface type outside 0..3)."""
    servers = []
    for srv in site.servers:
        if any(intf.type > 3 for intf in srv.interfaces):
            return None
        try:
            jwk = _key_json(srv.public_key)
        except ProtocolError:
            jwk = None
        pub = {"format": "key", "value": jwk} if jwk is not None else _b64_json(srv.public_key)
        servers.append(
            {
                "serverId": srv.server_id,
                "address": str(srv.ip),
                "publicKey": pub,
                "interfaces": [
                    {
                        "query": intf.serves_queries,
                        "admin": intf.serves_admin,
                        "protocol": _PROTOCOL_NAMES.get(intf.protocol, intf.protocol),
                        "port": intf.port,
                    }
                    for intf in srv.interfaces
                ],
            }
        )
    out: dict[str, Any] = {
        "version": site.data_version,
        "protocolVersion": f"{site.major}.{site.minor}",
        "serialNumber": site.serial,
        "primarySite": site.primary,
        "multiPrimary": site.multi_primary,
    }
    if site.hash_option != HashOption.BY_HANDLE:
        out["hashOption"] = site.hash_option
    if site.hash_filter:
        out["hashFilter"] = site.hash_filter
    out["attributes"] = [{"name": n, "value": v} for n, v in site.attributes]
    out["servers"] = servers
    return out


def _interface_from_json(obj: Any, where: str, what: str) -> Interface:
    intf = _object(obj, where, what)
    query = _bool(intf.get("query"), where, f"{what}.query")
    admin = _bool(intf.get("admin"), where, f"{what}.admin")
    proto = intf.get("protocol")
    if isinstance(proto, str) and proto.upper() in InterfaceProtocol.__members__:
        protocol = int(InterfaceProtocol[proto.upper()])
    else:
        protocol = _int(proto, where, f"{what}.protocol", 0xFF)
    return Interface(
        (2 if query else 0) | (1 if admin else 0),
        protocol,
        _int(intf.get("port"), where, f"{what}.port"),
    )


def _server_from_json(obj: Any, where: str, what: str) -> ServerInfo:
    srv = _object(obj, where, what)
    try:
        addr = ipaddress.ip_address(_text(srv.get("address"), where, f"{what}.address").strip())
    except ValueError:
        _fail(where, f"{what}.address {_show(srv.get('address'))} is not an IP address")
    # any data shape, as the reference reads it: {"format": "key", "value": JWK}, base64...
    pub = data_from_json(srv.get("publicKey", ""), where)
    intfs = srv.get("interfaces", [])
    interfaces = [
        _interface_from_json(x, where, f"{what}.interfaces[{i}]")
        for i, x in enumerate(_list(intfs, where, f"{what}.interfaces"))
    ]
    return ServerInfo.for_address(
        _int(srv.get("serverId"), where, f"{what}.serverId"), addr, pub, interfaces
    )


def site_from_json(obj: Any, where: str = "site") -> SiteInfo:
    site = _object(obj, where, "site value")
    major, minor = 2, 10
    if "protocolVersion" in site:
        version = _text(site["protocolVersion"], where, "site protocolVersion")
        major_s, dot, minor_s = version.partition(".")
        if not dot:
            _fail(where, f"site protocolVersion {_show(version)} is not MAJOR.MINOR")
        major = _int(major_s, where, "site protocol major version", 0xFF)
        minor = _int(minor_s, where, "site protocol minor version", 0xFF)
    attrs_in = site.get("attributes", [])
    if isinstance(attrs_in, Mapping):  # the reference also reads {"name": "value"}
        attrs_in = [{"name": k, "value": v} for k, v in attrs_in.items()]
    attributes = []
    for i, item in enumerate(_list(attrs_in, where, "site attributes")):
        att = _object(item, where, f"site attributes[{i}]")
        attributes.append(
            (
                _text(att.get("name"), where, f"site attributes[{i}].name"),
                _text(att.get("value"), where, f"site attributes[{i}].value"),
            )
        )
    servers = _list(site.get("servers", []), where, "site servers")
    return SiteInfo(
        serial=_int(site.get("serialNumber", 0), where, "site serialNumber", 0xFFFF),
        servers=tuple(
            _server_from_json(s, where, f"site servers[{i}]") for i, s in enumerate(servers)
        ),
        data_version=_int(site.get("version", 1), where, "site version", 0xFFFF),
        major=major,
        minor=minor,
        primary=_bool(site.get("primarySite", False), where, "site primarySite"),
        multi_primary=_bool(site.get("multiPrimary", False), where, "site multiPrimary"),
        hash_option=_int(
            site.get("hashOption", HashOption.BY_HANDLE), where, "site hashOption", 0xFF
        ),
        hash_filter=_text(site.get("hashFilter", ""), where, "site hashFilter"),
        attributes=tuple(attributes),
    )


# --- values --------------------------------------------------------------------------


def _value_from_json(obj: Any, where: str) -> HandleValue:
    val = _object(obj, where, "value")
    if "index" not in val:
        _fail(where, "index is missing")
    index = _int(val["index"], where, "index")
    where = f"value {index}"
    vtype = _text(val.get("type"), where, "type")
    if not vtype:
        _fail(where, "type is missing or empty")
    if "data" not in val:
        _fail(where, "data is missing")
    data = data_from_json(val["data"], where)
    ttl, ttl_type = DEFAULT_TTL_S, TTLType.RELATIVE
    raw_ttl = val.get("ttl")
    if isinstance(raw_ttl, str) and not _NUMERIC.fullmatch(raw_ttl):
        ttl, ttl_type = _parse_timestamp(raw_ttl, where, "ttl"), TTLType.ABSOLUTE  # as written
    elif raw_ttl is not None:
        ttl = _int(raw_ttl, where, "ttl")
    perms = val.get("permissions", "1110")
    if not (isinstance(perms, str) and len(perms) == 4 and set(perms) <= {"0", "1"}):
        _fail(
            where, f"permissions must be 4 characters of 0/1 ({_PERMS_ORDER}), got {_show(perms)}"
        )
    stamp = val.get("timestamp")
    value = HandleValue(
        index=index,
        type=vtype,
        data=data,
        ttl=ttl,
        ttl_type=ttl_type,
        timestamp=0 if stamp is None else _parse_timestamp(stamp, where, "timestamp"),
        permissions=int(perms, 2),
        references=_references(val.get("references") or [], where, "references"),
    )
    try:
        check_value(value)
    except LocalProtocolError as exc:
        raise ValueFormatError(exc.message) from None
    return value


def value_from_json(obj: Any) -> HandleValue:
    return _value_from_json(obj, "value")


def values_from_json(obj: Any) -> list[HandleValue]:
    """A list of values, ``{"values": [...]}`` or one value object."""
    if isinstance(obj, Mapping) and "values" in obj:
        obj = obj["values"]
    items = [obj] if isinstance(obj, Mapping) else obj
    if not isinstance(items, list):
        raise ValueFormatError(f"expected a list of values, got {type(obj).__name__}")
    if len(items) > MAX_VALUES_PER_HANDLE:
        raise ValueFormatError(
            f"{len(items)} values exceed the limit of {MAX_VALUES_PER_HANDLE} per handle"
        )
    values: list[HandleValue] = []
    seen: set[int] = set()
    for pos, item in enumerate(items):
        value = _value_from_json(item, f"values[{pos}]")
        if value.index in seen:
            raise ValueFormatError(
                f"value {value.index}: index {value.index} appears more than once"
            )
        seen.add(value.index)
        values.append(value)
    return values


def value_to_json(v: HandleValue) -> dict[str, Any]:
    out: dict[str, Any] = {"index": v.index, "type": v.type, "data": data_to_json(v.type, v.data)}
    if (v.permissions & 0x0F) != DEFAULT_PERMISSIONS:
        out["permissions"] = format(v.permissions & 0x0F, "04b")
    out["ttl"] = format_timestamp(v.ttl) if v.ttl_type == TTLType.ABSOLUTE else v.ttl
    out["timestamp"] = format_timestamp(v.timestamp)
    if v.references:
        out["references"] = [{"handle": r.handle, "index": r.index} for r in v.references]
    return out


def values_to_json(values: Iterable[HandleValue]) -> list[dict[str, Any]]:
    return [value_to_json(v) for v in values]
