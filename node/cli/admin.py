"""``idnode admin``: administer handles on a Handle server over the native protocol, as
the reference's admin tools do (docs/authentication.md, "Admin operations"), through
``node.client.admin``. Unlike ``idnode handle``, nothing here touches a database: the
server checks the identity, its HS_ADMIN rights and the values, so this works against
any node, or any Handle server, that the identity administers.

Secrets never come from the command line (they would sit in the shell history and in
``ps``): a file, stdin or a prompt. They are never printed either, nor are HS_SECKEY
values a server sends back.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa

from node.cli.common import AddCommand, Command, UserError, print_json, read_json, server_address
from node.client.admin import AdminClient, AdminError, Credentials
from node.client.native import ClientError
from node.secrets.vault import SECKEY_TYPE, shown
from node.settings import Settings
from protocol.errors import ProtocolError, ValueFormatError
from protocol.jsonvalues import value_from_json, values_from_json, values_to_json
from protocol.keys import decode_public_key
from protocol.msgsign import SiteKey, SitePublicKey
from protocol.structured import SiteInfo
from protocol.values import HandleValue

# --- what the user gives --------------------------------------------------------------


def admin_identity(value: str) -> tuple[int, str]:
    """``INDEX:HANDLE`` (``300:88.118.2/ADMIN``) as an argparse type."""
    index, sep, handle = value.partition(":")
    if not sep or not index.isdigit() or int(index) > 0xFFFFFFFF or not handle:
        raise argparse.ArgumentTypeError(f"{value!r} is not INDEX:HANDLE (300:88.118.2/ADMIN)")
    return int(index), handle


def parse_value(text: str) -> HandleValue:
    """``INDEX:TYPE:DATA``, DATA as UTF-8 text (it may hold colons: a URL). Checked by the
    same rules as the REST API's JSON values, with their defaults (permissions 1110)."""
    index, sep, rest = text.partition(":")
    vtype, sep2, data = rest.partition(":")
    if not (sep and sep2 and index.isdigit() and vtype):
        raise UserError(f"--value {text!r} is not INDEX:TYPE:DATA (1:URL:https://example.com)")
    # The errors below name the value by index and type only: DATA is the user's.
    if vtype.upper() == SECKEY_TYPE:
        raise UserError(
            f"--value {index}:{vtype}: a secret on the command line would sit in the shell "
            "history and in ps; put it in a --values-json file"
        )
    try:
        return value_from_json({"index": int(index), "type": vtype, "data": data})
    except ValueFormatError as exc:
        raise UserError(f"--value {index}:{vtype}: {exc.message}") from None


def given_values(args: argparse.Namespace, *, required: bool) -> tuple[HandleValue, ...]:
    if args.values_json == "-" and _secret_from_stdin(args):
        raise UserError("stdin cannot hold both the secret and --values-json -; put one in a file")
    values = [parse_value(v) for v in args.value or ()]
    if args.values_json is not None:
        values += values_from_json(read_json(args.values_json))
    if required and not values:
        raise UserError("no values: give --value INDEX:TYPE:DATA or --values-json FILE")
    indexes = [v.index for v in values]
    if len(set(indexes)) != len(indexes):
        raise UserError(f"a value index is given more than once: {sorted(indexes)}")
    return tuple(values)


def na_prefix(prefix: str) -> str:
    """``88.118.2`` from ``0.NA/88.118.2`` too: the client adds ``0.NA/`` itself."""
    return prefix[5:] if prefix.upper().startswith("0.NA/") else prefix


# --- credentials ----------------------------------------------------------------------


def _secret_from_stdin(args: argparse.Namespace) -> bool:
    if args.key_file is not None:
        return False
    return args.secret_file == "-" or (args.secret_file is None and not sys.stdin.isatty())


def credentials(args: argparse.Namespace) -> Credentials:
    index, handle = args.auth
    if args.key_file is not None:
        return Credentials(handle, index, private_key=_private_key(args.key_file))
    if args.secret_file is None and sys.stdin.isatty():
        secret = getpass.getpass(f"secret of {index}:{handle}: ").encode()
    elif _secret_from_stdin(args):
        secret = _one_newline_off(sys.stdin.buffer.read())
    else:
        secret = _one_newline_off(_read(args.secret_file))
    if not secret:
        raise UserError(f"the secret of {index}:{handle} is empty")
    return Credentials(handle, index, secret=secret)


def _one_newline_off(data: bytes) -> bytes:
    """The newline an editor or ``echo`` ends a file with is not part of the secret; only
    one comes off, so a secret that ends in whitespace survives."""
    for end in (b"\r\n", b"\n"):
        if data.endswith(end):
            return data[: -len(end)]
    return data


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None


def _private_key(path: str) -> SiteKey:
    pem = _read(path)
    try:
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except TypeError:  # encrypted: its passphrase, from the terminal only
            if not sys.stdin.isatty():
                raise UserError(
                    f"{path} is encrypted; run from a terminal to give its passphrase"
                ) from None
            passphrase = getpass.getpass(f"passphrase of {path}: ").encode()
            key = serialization.load_pem_private_key(pem, password=passphrase)
    except (ValueError, TypeError):
        raise UserError(f"{path} is not a PEM private key (or the passphrase is wrong)") from None
    # The key types a Handle challenge answer can be signed with (protocol.msgsign).
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | dsa.DSAPrivateKey):
        raise UserError(f"{path}: Handle takes RSA, EC or DSA keys, not {type(key).__name__}")
    return key


def site_key(path: Path, host: str) -> SitePublicKey:
    """The public key of the server at ``host`` in a site file (the binary HS_SITE that
    ``idnode siteinfo --out`` writes and Handle clients load): what a session setup
    reply must be signed with."""
    try:
        site = SiteInfo.from_wire(path.read_bytes())
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ProtocolError as exc:
        raise UserError(f"{path} is not a site file: {exc}") from None
    servers = [srv for srv in site.servers if str(srv.ip) == host] or list(site.servers[:1])
    if len(site.servers) > 1 and str(servers[0].ip) != host:
        raise UserError(f"{path} lists no server at {host}")
    try:
        key = decode_public_key(servers[0].public_key)
    except ProtocolError as exc:
        raise UserError(f"{path}: the server's key cannot be read: {exc}") from None
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey | dsa.DSAPublicKey):
        raise UserError(f"{path}: a {type(key).__name__} cannot sign Handle messages")
    return key


@contextlib.asynccontextmanager
async def connected(settings: Settings, args: argparse.Namespace) -> AsyncIterator[AdminClient]:
    """An admin client for the command's options; a refusal or an unreachable server
    becomes one line (a UserError), not a traceback."""
    creds = credentials(args)
    host, port = args.server or (settings.local_address, settings.handle_port)
    server_key = site_key(args.site_info, host) if args.site_info is not None else None
    try:
        async with AdminClient(
            host,
            port,
            creds,
            timeout_s=args.timeout_s,
            session=args.session,
            server_key=server_key,
        ) as client:
            yield client
    except AdminError as exc:
        # The reference, and this node, answer a failed challenge with RC 403 and no
        # message (admin capture #12): say then who the refused identity was.
        said = str(exc) if exc.message else f"{exc} for {creds.index}:{creds.handle}"
        raise UserError(said) from None
    except ClientError as exc:  # unreachable, timed out, or garbage
        raise UserError(str(exc)) from None


# --- the commands ---------------------------------------------------------------------


async def cmd_admin_create(settings: Settings, args: argparse.Namespace) -> int:
    values = given_values(args, required=False)
    async with connected(settings, args) as client:
        print(f"{await client.create(args.handle, values)} created")
    return 0


async def cmd_admin_add(settings: Settings, args: argparse.Namespace) -> int:
    values = given_values(args, required=True)
    async with connected(settings, args) as client:
        await client.add(args.handle, values)
    print(f"{args.handle}: added {_indexes(values)}")
    return 0


async def cmd_admin_modify(settings: Settings, args: argparse.Namespace) -> int:
    values = given_values(args, required=True)
    async with connected(settings, args) as client:
        await client.modify(args.handle, values)
    print(f"{args.handle}: modified {_indexes(values)}")
    return 0


def _indexes(values: tuple[HandleValue, ...]) -> str:
    return "values " + ", ".join(str(v.index) for v in values)


async def cmd_admin_remove(settings: Settings, args: argparse.Namespace) -> int:
    async with connected(settings, args) as client:
        await client.remove(args.handle, tuple(args.index))
    print(f"{args.handle}: removed values {', '.join(map(str, args.index))}")
    return 0


async def cmd_admin_delete(settings: Settings, args: argparse.Namespace) -> int:
    async with connected(settings, args) as client:
        await client.delete(args.handle)
    print(f"{args.handle} deleted")
    return 0


async def cmd_admin_list(settings: Settings, args: argparse.Namespace) -> int:
    async with connected(settings, args) as client:
        handles = await client.list_handles(na_prefix(args.prefix))
    sys.stdout.writelines(f"{h}\n" for h in handles)
    return 0


async def cmd_admin_home(settings: Settings, args: argparse.Namespace) -> int:
    async with connected(settings, args) as client:
        await client.home(na_prefix(args.prefix))
    print(f"{na_prefix(args.prefix)} homed")
    return 0


async def cmd_admin_unhome(settings: Settings, args: argparse.Namespace) -> int:
    async with connected(settings, args) as client:
        await client.unhome(na_prefix(args.prefix))
    print(f"{na_prefix(args.prefix)} unhomed")
    return 0


async def cmd_admin_homed(settings: Settings, args: argparse.Namespace) -> int:
    async with connected(settings, args) as client:
        prefixes = await client.list_homed()
    # Bare prefixes, as home and unhome take them (the server names them 0.NA/...).
    sys.stdout.writelines(f"{na_prefix(p)}\n" for p in prefixes)
    return 0


async def cmd_admin_resolve(settings: Settings, args: argparse.Namespace) -> int:
    async with connected(settings, args) as client:
        values = await client.resolve(args.handle, tuple(args.index or ()), tuple(args.type or ()))
    # This node never sends a secret (node.secrets.vault), but the reference sends them to
    # admins who may read them: masked here too, in the form this node's writes keep as is.
    print_json(values_to_json(shown(v) for v in values))
    return 0


# --- the parser -----------------------------------------------------------------------


def _connection_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("server and identity")
    g.add_argument(
        "--server",
        type=server_address,
        metavar="HOST:PORT",
        help="native TCP address ([::1]:2641 for IPv6; default: this node's, 127.0.0.1:2641)",
    )
    g.add_argument(
        "--auth",
        type=admin_identity,
        required=True,
        metavar="INDEX:HANDLE",
        help="the admin identity, e.g. 300:88.118.2/ADMIN",
    )
    one = g.add_mutually_exclusive_group()
    one.add_argument(
        "--secret-file",
        metavar="FILE",
        help="its HS_SECKEY secret (one trailing newline dropped; - for stdin). "
        "Neither this nor --key-file: prompted on a terminal, else read from stdin",
    )
    one.add_argument(
        "--key-file", metavar="FILE", help="its HS_PUBKEY's private key (PEM: RSA, EC or DSA)"
    )
    g.add_argument("--session", action="store_true", help="set up a Diffie-Hellman session first")
    g.add_argument(
        "--site-info",
        type=Path,
        metavar="FILE",
        help="the server's site file (idnode siteinfo --out): its key must sign the session "
        "setup, as the reference client checks",
    )
    g.add_argument(
        "--timeout-s", type=float, default=10.0, help="deadline of each operation (default 10)"
    )


def _value_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--value",
        action="append",
        metavar="INDEX:TYPE:DATA",
        help="a value, DATA as UTF-8 text (repeatable)",
    )
    p.add_argument(
        "--values-json",
        metavar="FILE",
        help='values as JSON, as the REST API takes them ([{"index", "type", "data"}]); - for stdin',
    )


def add_commands(sub: Any, command: AddCommand) -> None:
    adm = sub.add_parser(
        "admin",
        help="administer handles on a Handle server over the native protocol",
        description="Administer handles on a Handle server over the native protocol (TCP), "
        "authenticated as an admin identity with its secret or private key.",
    )
    group = adm.add_subparsers(dest="sub", required=True, metavar="SUBCOMMAND")

    def leaf(name: str, fn: Command, help: str) -> argparse.ArgumentParser:
        p = command(name, fn, help, group)
        _connection_options(p)
        return p

    p = leaf("create", cmd_admin_create, "create a handle with values")
    p.add_argument("handle")
    _value_options(p)
    p = leaf("add", cmd_admin_add, "add values to a handle")
    p.add_argument("handle")
    _value_options(p)
    p = leaf("modify", cmd_admin_modify, "replace values of a handle, by index")
    p.add_argument("handle")
    _value_options(p)
    p = leaf("remove", cmd_admin_remove, "remove values of a handle, by index")
    p.add_argument("handle")
    p.add_argument("index", type=int, nargs="+")
    p = leaf("delete", cmd_admin_delete, "delete a handle")
    p.add_argument("handle")
    p = leaf("list", cmd_admin_list, "list the handles under a prefix, one per line")
    p.add_argument("prefix", help="88.118.2 (or 0.NA/88.118.2)")
    p = leaf("home", cmd_admin_home, "home a prefix on the server (server admins)")
    p.add_argument("prefix")
    p = leaf("unhome", cmd_admin_unhome, "unhome a prefix (server admins)")
    p.add_argument("prefix")
    leaf("homed", cmd_admin_homed, "list the prefixes homed on the server, one per line")
    p = leaf("resolve", cmd_admin_resolve, "resolve as the identity: values it may read, as JSON")
    p.add_argument("handle")
    p.add_argument("--index", type=int, action="append", help="value index (repeatable)")
    p.add_argument("--type", action="append", help="value type (repeatable)")
