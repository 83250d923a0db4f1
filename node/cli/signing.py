"""``idnode verify``, ``idnode keys`` and ``idnode resign``: signed records, from the
partner's side and the operator's.

``verify`` fetches the record and the certificates its signature names over one
transport (HTTP API or native Handle protocol), then runs the pure
``protocol.recordsig.verify_record`` against a trust root: ``--root PEM`` (one key or a
bundle, such as ``keys export-public`` prints), else ``trust_root_file``, else the
embedded root key of the local data directory.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from node.cli.common import AddCommand, UserError, print_json, server_address, write_service
from node.client.native import ClientError, NativeClient
from node.errors import EXIT_ERROR
from node.runtime.database import cli_database
from node.settings import Settings
from node.signing.keystore import open_key_store
from node.signing.signer import build_signer, cert_index
from node.signing.trust import Fetch, collect_certs, load_public_pems, public_pem, trust_roots
from node.writes.resign import progress_printer, resign_all
from protocol.bodies import ResolutionReply
from protocol.codes import ResponseCode
from protocol.jose import SIGNING_ALGS
from protocol.jsonvalues import values_from_json
from protocol.keys import PublicKey
from protocol.recordsig import verify_record
from protocol.values import HandleValue


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
            raise UserError(f"cannot fetch {handle} from {host}:{port}: {exc}") from None
        return tuple(values_from_json(body.get("values", [])))

    return fetch


def _native_fetcher(host: str, port: int, timeout_s: float) -> Fetch:
    client = NativeClient(host, port, timeout_s=timeout_s)

    async def fetch(handle: str) -> tuple[HandleValue, ...] | None:
        try:
            reply = await client.resolve(handle)
        except ClientError as exc:
            raise UserError(f"cannot resolve {handle} at {host}:{port}: {exc}") from None
        if reply.header.response_code != ResponseCode.SUCCESS or not isinstance(
            reply.body, ResolutionReply
        ):
            return None
        return tuple(reply.body.values or ())

    return fetch


def _roots(settings: Settings, root_file: str | None) -> list[PublicKey]:
    if root_file is not None:
        return load_public_pems(Path(root_file))
    roots = trust_roots(settings)
    if not roots:
        raise UserError(
            f"no trust root: pass --root PEMFILE, set trust_root_file, or run on the node's data dir "
            f"({settings.data_dir})"
        )
    return roots


async def cmd_verify(settings: Settings, args: argparse.Namespace) -> int:
    roots = _roots(settings, args.root)
    if args.via == "http":
        host, port = args.server or (settings.local_address, settings.http_port)
        fetch = _http_fetcher(host, port, args.timeout)
    else:
        host, port = args.server or (settings.local_address, settings.handle_port)
        fetch = _native_fetcher(host, port, args.timeout)
    values = await fetch(args.handle)
    if values is None:
        raise UserError(f"handle {args.handle} not found at {host}:{port}")
    certs = await collect_certs(values, fetch)
    report = verify_record(args.handle, values, certs=certs, roots=roots, now=int(time.time()))
    sys.stdout.write(report.render() + "\n")
    return 0 if report.ok else EXIT_ERROR


async def cmd_keys_show(settings: Settings, args: argparse.Namespace) -> int:
    store = open_key_store(settings)
    print_json(
        {
            "directory": str(store.directory),
            "keys": [
                {"kid": k.kid, "alg": k.alg, "created": k.created, "current": k.current}
                for k in store.keys()  # noqa: SIM118 (a method, not a dict)
            ],
            "root": (store.directory / "root.pem").exists(),
            "signingCertFile": settings.signing_cert_file,
            "trustRootFile": settings.trust_root_file,
        }
    )
    return 0


async def cmd_keys_export_public(settings: Settings, args: argparse.Namespace) -> int:
    """Public keys only. ``--root``: the trust root alone, what partners configure as
    ``--root`` / ``trust_root_file``; without it, the current signing key and the root
    (a bundle ``--root`` also accepts)."""
    roots = trust_roots(settings)
    if args.root:
        if not roots:
            raise UserError(
                f"no trust root in {settings.data_dir / 'keys'} and no trust_root_file: "
                "start the node once (it creates the embedded root), or set trust_root_file"
            )
        sys.stdout.write(public_pem(roots[0]))
        return 0
    store = open_key_store(settings)
    current = store.current()
    out = [
        f"# current signing key {current.kid} ({current.alg})",
        store.public_pem().decode("ascii").strip(),
    ]
    if roots:
        out += ["# trust root", public_pem(roots[0]).strip()]
    sys.stdout.write("\n".join(out) + "\n")
    return 0


async def cmd_keys_generate(settings: Settings, args: argparse.Namespace) -> int:
    """Add a key; it becomes current only when the store has none (``rotate`` switches)."""
    return _new_key(settings, args.alg or settings.signing_alg, make_current=False)


async def cmd_keys_rotate(settings: Settings, args: argparse.Namespace) -> int:
    """Add a key and make it current; older keys stay (their certificates stay published
    at their own 0.NA/P index) so records signed by them verify until ``idnode resign``."""
    if settings.signing_cert_file is not None:
        raise UserError(
            "signing_cert_file certifies the current key: rotating would leave the node without a "
            "certificate. Generate a key (idnode keys generate), have the top-level node certify it, "
            "then make it current and point signing_cert_file at the new certificate."
        )
    return _new_key(settings, args.alg or settings.signing_alg, make_current=True)


def _new_key(settings: Settings, alg: str, *, make_current: bool) -> int:
    store = open_key_store(settings)
    now = int(time.time())
    info = store.generate(alg, now, make_current=make_current)
    if info.current and settings.signing_cert_file is None:
        build_signer(
            settings, now
        )  # issues the new key's certificates from the root (checks the store)
    position = next(n for n, k in enumerate(store.keys()) if k.kid == info.kid)
    print_json(
        {
            "kid": info.kid,
            "alg": info.alg,
            "current": info.current,
            "certIndex": cert_index(position),
        }
    )
    if info.current:
        sys.stderr.write(
            "new writes sign with this key once the node (re)starts; run `idnode resign` to re-sign "
            "existing records (records signed by older keys keep verifying meanwhile)\n"
        )
    return 0


async def cmd_resign(settings: Settings, args: argparse.Namespace) -> int:
    if not settings.sign_records:
        raise UserError("sign_records is false: there is nothing to sign with")
    if args.batch < 1:
        raise UserError("--batch must be at least 1")
    async with cli_database(settings) as db:
        counts = await resign_all(
            db.registry,
            write_service(settings, db),
            prefix=args.prefix,
            batch=args.batch,
            progress=None if args.quiet else progress_printer(),
            restart=args.restart,
        )
    print_json(dict(sorted(counts.items())))
    return 0


def add_commands(sub: Any, command: AddCommand) -> None:
    p = command(
        "verify",
        cmd_verify,
        "resolve a handle and verify its HS_SIGNATURE and certificate chain",
        sub,
    )
    p.add_argument("handle")
    p.add_argument(
        "--via", choices=("http", "native"), default="native", help="transport (default native)"
    )
    p.add_argument(
        "--server",
        type=server_address,
        metavar="HOST:PORT",
        help="node to ask (default: this node's settings)",
    )
    p.add_argument(
        "--root",
        metavar="PEMFILE",
        help="trusted root public key(s), one PEM or a bundle (default: this node's root)",
    )
    p.add_argument("--timeout", type=float, default=5.0, help="deadline per request in seconds")
    keys = sub.add_parser("keys", help="record-signing keys").add_subparsers(
        dest="sub", required=True
    )
    command("show", cmd_keys_show, "list the signing keys (no key material)", keys)
    p = command(
        "export-public",
        cmd_keys_export_public,
        "print the current public key and the trust root (PEM); --root: the trust root alone",
        keys,
    )
    p.add_argument(
        "--root", action="store_true", help="print only the trust root, for partners' --root"
    )
    p = command(
        "generate", cmd_keys_generate, "add a signing key (current only if there is none)", keys
    )
    p.add_argument("--alg", choices=SIGNING_ALGS, help="algorithm (default: signing_alg)")
    p = command(
        "rotate", cmd_keys_rotate, "add a signing key and make it current (older keys stay)", keys
    )
    p.add_argument("--alg", choices=SIGNING_ALGS, help="algorithm (default: signing_alg)")
    p = command(
        "resign",
        cmd_resign,
        "re-sign stored records with the current key, in batches, resumably",
        sub,
    )
    p.add_argument("--prefix", help="only handles under this prefix (88.118 covers 88.118.2)")
    p.add_argument(
        "--batch", type=int, default=500, help="records per batch (progress saved after each)"
    )
    p.add_argument(
        "--restart",
        action="store_true",
        help="ignore saved progress and start from the first handle",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar on stderr")
