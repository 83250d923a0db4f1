"""``idnode verify`` and ``idnode keys``: checking signed records and showing public keys.

``verify`` fetches the record and the certificates its signature names over one transport
(HTTP API or native Handle protocol), then runs the pure ``protocol.recordsig.verify_record``
against a trust root: ``--root PEM``, else ``trust_root_file``, else the embedded root key
of the local data directory. Certificates are found by reference: the signature's ``iss``
and ``chain`` entries (``index:handle``) name HS_CERT values, which are fetched, and so on
up the chain (bounded).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from protocol.certs import canonical_reference, parse_cert, parse_claims, split_reference
from protocol.jose import SignatureError, jws_parse
from protocol.jsonvalues import values_from_json
from protocol.keys import PublicKey
from protocol.recordsig import HS_CERT, is_signature, verify_record
from protocol.values import HandleValue

from .settings import Settings
from .signing import load_public_pem, open_key_store, public_pem, trust_roots

EXIT_ERROR = 1
MAX_FETCHES = 10  # certificate records fetched per verification

Fetch = Callable[[str], Awaitable[tuple[HandleValue, ...] | None]]


class VerifyError(Exception):
    """The record or the trust root could not be obtained (not a verification result)."""


def _http_fetcher(host: str, port: int, timeout_s: float) -> Fetch:
    async def fetch(handle: str) -> tuple[HandleValue, ...] | None:
        url = f"http://{host}:{port}/api/handles/{quote(handle, safe='/')}"
        timeout = aiohttp.ClientTimeout(total=timeout_s)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as reply:
                if reply.status != 200:
                    return None
                body: Any = await reply.json()
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise VerifyError(f"cannot fetch {handle} from {host}:{port}: {exc}") from None
        return tuple(values_from_json(body.get("values", [])))

    return fetch


def _native_fetcher(host: str, port: int, timeout_s: float) -> Fetch:
    from protocol.bodies import ResolutionReply
    from protocol.codes import ResponseCode

    from .client import ClientError, NativeClient

    client = NativeClient(host, port, timeout_s=timeout_s)

    async def fetch(handle: str) -> tuple[HandleValue, ...] | None:
        try:
            reply = await client.resolve(handle)
        except ClientError as exc:
            raise VerifyError(f"cannot resolve {handle} at {host}:{port}: {exc}") from None
        if reply.header.response_code != ResponseCode.SUCCESS or not isinstance(reply.body, ResolutionReply):
            return None
        return tuple(reply.body.values or ())

    return fetch


def _references(token: str | bytes) -> list[str]:
    """The ``iss`` and ``chain`` entries of a token (nothing if it is unreadable)."""
    try:
        claims = parse_claims(jws_parse(token).payload)
    except SignatureError:
        return []
    return [claims.iss, *claims.chain]


async def collect_certs(values: tuple[HandleValue, ...], fetch: Fetch) -> dict[str, str]:
    """HS_CERT tokens reachable from the record's signatures, keyed ``index:handle``."""
    certs: dict[str, str] = {}
    todo = [ref for v in values if is_signature(v) for ref in _references(v.data)]
    fetched: set[str] = set()
    while todo and len(fetched) < MAX_FETCHES:
        _, handle = split_reference(todo.pop(0))
        key = canonical_reference(handle)
        if key in fetched:
            continue
        fetched.add(key)
        for v in await fetch(handle) or ():
            if v.type_matches(HS_CERT):
                token = v.data.decode("ascii", "replace")
                certs[f"{v.index}:{handle}"] = token
                try:
                    parse_cert(token)
                except SignatureError:
                    continue
                todo += _references(token)
    return certs


def _roots(settings: Settings, root_file: str | None) -> list[PublicKey]:
    if root_file is not None:
        return [load_public_pem(Path(root_file))]
    roots = trust_roots(settings)
    if not roots:
        raise VerifyError(
            f"no trust root: pass --root PEMFILE, set trust_root_file, or run on the node's data dir "
            f"({settings.data_dir})"
        )
    return roots


async def cmd_verify(settings: Settings, args: argparse.Namespace) -> int:
    from .cli import UserError

    try:
        roots = _roots(settings, args.root)
        if args.via == "http":
            host, port = args.server or (settings.advertised_address, settings.http_port)
            fetch = _http_fetcher(host, port, args.timeout)
        else:
            host, port = args.server or (settings.advertised_address, settings.handle_port)
            fetch = _native_fetcher(host, port, args.timeout)
        values = await fetch(args.handle)
        if values is None:
            raise UserError(f"handle {args.handle} not found at {host}:{port}")
        certs = await collect_certs(values, fetch)
    except VerifyError as exc:
        raise UserError(str(exc)) from None
    report = verify_record(args.handle, values, certs=certs, roots=roots, now=int(time.time()))
    sys.stdout.write(report.render() + "\n")
    return 0 if report.ok else EXIT_ERROR


async def cmd_keys_show(settings: Settings, args: argparse.Namespace) -> int:
    from .cli import _print_json

    store = open_key_store(settings)
    _print_json(
        {
            "directory": str(store.directory),
            "keys": [{"kid": k.kid, "alg": k.alg, "created": k.created, "current": k.current} for k in store.keys()],  # noqa: SIM118 (a method)
            "root": (store.directory / "root.pem").exists(),
            "signingCertFile": settings.signing_cert_file,
            "trustRootFile": settings.trust_root_file,
        }
    )
    return 0


async def cmd_keys_export_public(settings: Settings, args: argparse.Namespace) -> int:
    """Public keys only: what partners configure as ``--root`` / ``trust_root_file``."""
    store = open_key_store(settings)
    current = store.current()
    out = [f"# current signing key {current.kid} ({current.alg})", store.public_pem().decode("ascii").strip()]
    roots = trust_roots(settings)
    if roots:
        out += ["# trust root", public_pem(roots[0]).strip()]
    sys.stdout.write("\n".join(out) + "\n")
    return 0


def add_commands(sub: Any, command: Callable[..., argparse.ArgumentParser], server: Any) -> None:
    p = command("verify", cmd_verify, "resolve a handle and verify its HS_SIGNATURE and certificate chain", sub)
    p.add_argument("handle")
    p.add_argument("--via", choices=("http", "native"), default="native", help="transport (default native)")
    p.add_argument("--server", type=server, metavar="HOST:PORT", help="node to ask (default: this node's settings)")
    p.add_argument("--root", metavar="PEMFILE", help="trusted root public key (default: this node's root)")
    p.add_argument("--timeout", type=float, default=5.0, help="deadline per request in seconds")
    keys = sub.add_parser("keys", help="record-signing keys").add_subparsers(dest="sub", required=True)
    command("show", cmd_keys_show, "list the signing keys (no key material)", keys)
    command("export-public", cmd_keys_export_public, "print the current public key and the root public key (PEM)", keys)
