"""Record signing (docs/signing.md): the node's key, its HS_CERT chain and ``RecordSigner``.

Naming scheme (README "Signed records"). For a *node prefix* P (the first two labels of
an enterprise prefix: 88.118.2 -> 88.118; a one- or two-label prefix is its own):

- a record under P is signed by ``iss = N:0.NA/P`` with ``chain = [N:0.NA/P, 401:0.NA/P]``,
  N the signing key's index (``cert_index``: 400 for the store's first key, 402, 403, ...
  for later ones), so rotation never reuses an index;
- ``0.NA/P`` (synthesized by the node, ``node.resolution.site``) carries one HS_CERT per key in the
  store at its index (``sub`` N:0.NA/P, issued by 401:0.NA/P), so records signed by an
  older key verify until re-signed, and HS_CERT 401, the root certificate (self-issued,
  ``sub = iss`` = 401:0.NA/P);
- both grant only ``derivedPrefixes`` and ``handlesUnderThisPrefix`` over ``0.NA/P``, so a
  key certified for 88.118 cannot vouch for 88.119 records.

Trust root. Embedded default: a self-signed root key in the key store (``root.pem``);
verifiers on the node use it, partners get its public key (``idnode keys export-public``).
Deployment: ``signing_cert_file`` is an HS_CERT for this node's current key issued by the
top-level node (its ``sub`` becomes the signer); ``trust_root_file`` the issuer's PEM key.
Then no local root key is used and 0.NA/P carries only that certificate (at its index).

The passphrase comes from ``IDNODE_KEY_PASSPHRASE`` or ``key_passphrase_file``; without
either, a random one in ``<data_dir>/keys.passphrase`` (0600), which is fine for the
embedded demo but puts key and passphrase side by side: deployments supply their own.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from node.settings import Settings
from node.signing.keystore import KeyStoreError, open_key_store
from protocol.certs import CertPerm, Perm, make_cert, parse_cert, self_signed_root, split_reference
from protocol.codes import DEFAULT_PERMISSIONS
from protocol.jose import SignatureError, SigningKey, public_key_id
from protocol.keys import PublicKey
from protocol.recordsig import HS_CERT, with_signature
from protocol.values import HandleValue

log = logging.getLogger("idnode.signing")

NODE_CERT_INDEX = 400
ROOT_CERT_INDEX = 401
ZERO_NA = "0.NA/"


def node_prefix(prefix: str) -> str:
    """The node prefix governing an enterprise prefix (IDIS: country.node.enterprise)."""
    return ".".join(prefix.split(".")[:2]).upper()


def handle_node_prefix(handle: str) -> str:
    """Node prefix of a handle: 88.118.2/X -> 88.118; 0.NA/88.118.2 -> 88.118."""
    head, _, tail = handle.partition("/")
    if head.upper() == "0.NA":
        return node_prefix(tail)
    return node_prefix(head)


def grants(prefix: str) -> tuple[CertPerm, ...]:
    zero = f"{ZERO_NA}{prefix}"
    return (CertPerm(zero, Perm.DERIVED_PREFIXES), CertPerm(zero, Perm.HANDLES_UNDER_THIS_PREFIX))


def _cert_value(index: int, token: str, now: int) -> HandleValue:
    return HandleValue(
        index=index,
        type=HS_CERT,
        data=token.encode("ascii"),
        timestamp=now,
        permissions=int(DEFAULT_PERMISSIONS),
    )


def cert_index(position: int) -> int:
    """HS_CERT index in ``0.NA/P`` of the key at ``position`` in the key store (creation
    order): the first key 400, later ones 402, 403, ... (401 is the root). Indexing by key,
    not by "current", keeps records signed by an older key verifying after a rotation."""
    return NODE_CERT_INDEX if position == 0 else ROOT_CERT_INDEX + position


@dataclass
class _Issued:
    nodes: dict[int, str]  # cert index -> the key's certificate
    root: str
    renew_at: int


@dataclass
class RecordSigner:
    """Signs records with the node key; issues (embedded) or holds (deployment) its cert."""

    key: SigningKey
    lifetime_s: int
    root_key: SigningKey | None = None  # embedded default only
    deployment_cert: str | None = None  # token from signing_cert_file
    key_index: int = NODE_CERT_INDEX  # where 0.NA/P publishes the current key's certificate
    older: dict[int, PublicKey] = field(default_factory=dict)  # cert index -> older key (embedded)
    _issued: dict[str, _Issued] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __repr__(self) -> str:  # keys stay out of logs and tracebacks
        return f"RecordSigner(alg={self.key.alg}, kid={self.key.kid})"

    @property
    def root_public(self) -> PublicKey | None:
        return self.root_key.public_key if self.root_key is not None else None

    def _certs(self, prefix: str, now: int) -> _Issued:
        """This node's certificate and the root's for node prefix ``prefix``, made on first
        use and renewed at half their life (certs outlive the signatures they vouch for)."""
        assert self.root_key is not None
        with self._lock:
            issued = self._issued.get(prefix)
            if issued is not None and now < issued.renew_at:
                return issued
            life = 2 * self.lifetime_s
            root_ref = f"{ROOT_CERT_INDEX}:{ZERO_NA}{prefix}"
            keys = {**self.older, self.key_index: self.key.public_key}
            nodes = {
                index: make_cert(
                    self.root_key,
                    root_ref,
                    f"{index}:{ZERO_NA}{prefix}",
                    public,
                    grants(prefix),
                    now=now,
                    lifetime_s=life,
                )
                for index, public in sorted(keys.items())
            }
            root = self_signed_root(self.root_key, root_ref, grants(prefix), now, life)
            issued = self._issued[prefix] = _Issued(nodes, root, now + life // 2)
            return issued

    def issuer_for(self, handle: str, now: int) -> tuple[str, tuple[str, ...]] | None:
        """(iss, chain) for a handle this node signs, else None."""
        prefix = handle_node_prefix(handle)
        if self.deployment_cert is not None:
            cert = parse_cert(self.deployment_cert)
            return (
                (cert.subject, ())
                if split_reference(cert.subject)[1].upper() == f"{ZERO_NA}{prefix}"
                else None
            )
        self._certs(prefix, now)
        node_ref = f"{self.key_index}:{ZERO_NA}{prefix}"
        return node_ref, (node_ref, f"{ROOT_CERT_INDEX}:{ZERO_NA}{prefix}")

    def sign(
        self, handle: str, values: Sequence[HandleValue], now: int
    ) -> tuple[HandleValue, ...] | None:
        """``values`` with a fresh HS_SIGNATURE, or None when this node does not sign ``handle``."""
        found = self.issuer_for(handle, now)
        if found is None:
            return None
        issuer, chain = found
        return with_signature(
            handle, values, self.key, issuer, now=now, lifetime_s=self.lifetime_s, chain=chain
        )

    def cert_values(self, prefix: str, now: int) -> tuple[HandleValue, ...]:
        """HS_CERT values for the synthesized ``0.NA/<prefix>`` record (none unless
        ``prefix`` is a node prefix this node signs for)."""
        if node_prefix(prefix) != prefix.upper():
            return ()
        if self.deployment_cert is not None:
            index, ref = split_reference(parse_cert(self.deployment_cert).subject)
            if ref.upper() != f"{ZERO_NA}{prefix.upper()}":
                return ()
            return (_cert_value(index, self.deployment_cert, now),)
        issued = self._certs(prefix.upper(), now)
        nodes = tuple(_cert_value(index, token, now) for index, token in issued.nodes.items())
        return tuple(
            sorted((*nodes, _cert_value(ROOT_CERT_INDEX, issued.root, now)), key=lambda v: v.index)
        )


def build_signer(
    settings: Settings, now: int, env: Mapping[str, str] | None = None
) -> RecordSigner:
    """Open (or create) the key store and the node's signing key; blocking (key files)."""
    store = open_key_store(settings, env)
    if not store.keys():
        info = store.generate(settings.signing_alg, now)
        log.info("generated record-signing key %s (%s) in %s", info.kid, info.alg, store.directory)
    key = store.signing_key()
    if settings.signing_cert_file is None:
        infos = store.keys()
        position = next(n for n, info in enumerate(infos) if info.current)
        older = {
            cert_index(n): store.signing_key(info.kid).public_key
            for n, info in enumerate(infos)
            if not info.current
        }
        return RecordSigner(
            key,
            settings.signature_lifetime_s,
            root_key=store.root_key(),
            key_index=cert_index(position),
            older=older,
        )
    try:
        token = settings.signing_cert_file.read_text(encoding="ascii").strip()
        cert = parse_cert(token)
    except OSError as exc:
        raise KeyStoreError(f"cannot read {settings.signing_cert_file}: {exc.strerror}") from None
    except (SignatureError, UnicodeDecodeError) as exc:
        raise KeyStoreError(
            f"{settings.signing_cert_file} is not an HS_CERT token: {exc}"
        ) from None
    if public_key_id(cert.public_key) != public_key_id(key.public_key):
        raise KeyStoreError(
            f"{settings.signing_cert_file} certifies another key than the current one ({key.kid})"
        )
    return RecordSigner(key, settings.signature_lifetime_s, deployment_cert=cert.token)
