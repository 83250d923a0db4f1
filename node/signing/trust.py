"""Trust roots and certificate chains, for whoever verifies a signed record: the
``idnode verify`` command and the record page (docs/signing.md).

A verifier trusts public keys given as PEM: ``trust_root_file`` (the top-level node's
key in a deployment), else the embedded root of the local key store. A PEM file may be
a bundle: every public key in it is trusted, so ``idnode keys export-public`` output
can be handed to ``--root`` as it is. Certificates are found by reference: the
signature's ``iss`` and ``chain`` entries (``index:handle``) name HS_CERT values, which
are fetched through whatever transport the caller has, and so on up the chain (bounded).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from node.settings import Settings
from node.signing.keystore import KeyStoreError, open_key_store
from protocol.certs import canonical_reference, parse_cert, parse_claims, split_reference
from protocol.jose import SignatureError, jws_parse
from protocol.keys import PublicKey
from protocol.recordsig import HS_CERT, is_signature
from protocol.values import HandleValue

MAX_FETCHES = 10  # certificate records fetched per verification
_PEM_BLOCK = re.compile(rb"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----", re.DOTALL)

Fetch = Callable[[str], Awaitable[tuple[HandleValue, ...] | None]]


def load_public_pems(path: Path) -> list[PublicKey]:
    """Every PEM public key in ``path`` (one, or a bundle with comment lines between)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyStoreError(f"cannot read {path}: {exc.strerror}") from None
    keys = []
    for block in _PEM_BLOCK.findall(data):
        try:
            keys.append(serialization.load_pem_public_key(block))
        except ValueError:
            raise KeyStoreError(f"{path} holds a PEM block that is not a public key") from None
    if not keys:
        raise KeyStoreError(f"{path} holds no PEM public key (-----BEGIN PUBLIC KEY-----)")
    return keys  # type: ignore[return-value]


def load_public_pem(path: Path) -> PublicKey:
    """The one public key in ``path`` (a bundle of several is refused here)."""
    keys = load_public_pems(path)
    if len(keys) > 1:
        raise KeyStoreError(f"{path} holds {len(keys)} public keys where one is expected")
    return keys[0]


def public_pem(key: PublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def trust_roots(settings: Settings, env: Mapping[str, str] | None = None) -> list[PublicKey]:
    """Root keys a verifier on this node trusts: trust_root_file, else the embedded root
    (only if it already exists: verifying never creates keys)."""
    if settings.trust_root_file is not None:
        return load_public_pems(settings.trust_root_file)
    if not (settings.data_dir / "keys" / "root.pem").exists():
        return []
    return [open_key_store(settings, env).root_key().public_key]


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
