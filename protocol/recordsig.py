"""Handle v9 record signatures: the HS_SIGNATURE value and its verification (docs/signing.md).

HS_SIGNATURE data is a compact JWS (``jose``) whose payload is the Handle v9 claims set
(``certs.base_claims``) plus, as the reference's ``HandleSigner`` / ``DigestedHandleValues``
write it::

    "digests": {"alg": "SHA-256", "digests": [{"index": 1, "digest": "<base64>"}, ...]}

- A digest is SHA-256 over the value's wire encoding minus its first 8 bytes (index and
  timestamp; ``HandleValueDigester.VALUE_DIGEST_OFFSET = 2 * INT_SIZE``), so touching a
  timestamp keeps the signature valid while any change to TTL, permissions, type, data or
  references shows.
- ``digest`` is *standard* base64 with padding (commons-codec ``encodeBase64String``), not
  base64url like the JWS parts. We write that; we read either alphabet, padded or not.
- Covered: every public-read value except HS_SIGNATURE itself (``Util.filterOnlyPublicValues``
  in ``JoseSignHandleRecordOperation``; ``HandleRecordTrustVerifier.valueNeedsSignature``).
- Index: an existing HS_SIGNATURE keeps its index, otherwise the lowest free index >= 400.
  (The reference batch signer drops old signatures first and then takes the lowest free
  index >= 400, which differs only when an old signature sat above a free slot.)

Verification follows ``ChainBuilder`` / ``ChainVerifier`` but is pure: the caller supplies
the certificates and trust-root keys. From the signature up, each token names its issuer
(``iss``, ``index:handle``); the next link is looked up in ``certs`` by the token's
``chain`` entry (the first token's list is used up before a later token's, as in the
reference) or by the issuer reference itself; the certificate's ``sub`` must be that issuer.
Every token must verify under its issuer's key and be in its date range, and every issuer's
``perms`` must cover the record's handle. The chain ends at a self-issued certificate whose
key is a configured root, or at a token that verifies directly under a root key when no
certificate for its issuer is supplied (a configured root key is trusted for everything).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .certs import (
    Cert,
    CertPerm,
    Claims,
    authorizes,
    base_claims,
    canonical_reference,
    parse_cert,
    parse_claims,
    same_reference,
    split_reference,
    upper_ascii,
)
from .codes import DEFAULT_PERMISSIONS, TTLType
from .errors import LocalProtocolError
from .jose import Jws, SignatureError, SigningKey, jws_parse, jws_sign, jws_verify, public_key_id
from .keys import PublicKey
from .sigreport import ChainLink, ChainProblem, Problem, ValueCheck, ValueStatus, Verification
from .valuecodec import value_to_wire
from .values import DEFAULT_TTL_S, MAX_DATA_BYTES, HandleValue

__all__ = [
    "HS_CERT",
    "HS_SIGNATURE",
    "Verification",
    "sign_record",
    "signature_index",
    "value_digest",
    "verify_record",
    "with_signature",
]

HS_SIGNATURE = "HS_SIGNATURE"
HS_CERT = "HS_CERT"
FIRST_SIGNATURE_INDEX = 400
DIGEST_ALG = "SHA-256"
MAX_CHAIN_LENGTH = 50  # ChainBuilder.MAX_CHAIN_LENGTH
_DIGEST_OFFSET = 8  # u32 index + u32 timestamp


def is_signature(v: HandleValue) -> bool:
    # v.type_matches(HS_SIGNATURE), without its subtype rule (HS_SIGNATURE ends in no
    # '.'): called for every value of every record signed or checked.
    return v.type == HS_SIGNATURE or v.type.upper() == HS_SIGNATURE


def needs_cover(v: HandleValue) -> bool:
    return v.public_read and not is_signature(v)


def value_digest(v: HandleValue) -> bytes:
    return hashlib.sha256(value_to_wire(v)[_DIGEST_OFFSET:]).digest()


def signature_index(values: Sequence[HandleValue]) -> int:
    existing = [v.index for v in values if is_signature(v)]
    if existing:
        return min(existing)
    used = {v.index for v in values}
    index = FIRST_SIGNATURE_INDEX
    while index in used:
        index += 1
    return index


# --- signing -----------------------------------------------------------------------------


def sign_record(
    handle: str,
    values: Sequence[HandleValue],
    key: SigningKey,
    issuer: str,
    *,
    now: int,
    lifetime_s: int,
    chain: Sequence[str] = (),
) -> HandleValue:
    """The HS_SIGNATURE value covering every public value of ``values`` but signatures.
    ``issuer`` is the signer as ``index:handle``; ``chain`` the optional certificate path."""
    covered = [v for v in values if needs_cover(v)]
    claims = base_claims(issuer, handle, now=now, lifetime_s=lifetime_s, chain=chain)
    claims["digests"] = {
        "alg": DIGEST_ALG,
        "digests": [
            {"index": v.index, "digest": base64.b64encode(value_digest(v)).decode("ascii")}
            for v in covered
        ],
    }
    data = jws_sign(claims, key).encode("ascii")
    if len(data) > MAX_DATA_BYTES:
        raise LocalProtocolError(
            f"HS_SIGNATURE for {len(covered)} values is {len(data)} bytes, over the "
            f"{MAX_DATA_BYTES}-byte value limit"
        )
    # A cache must not hold the signature longer than the values it vouches for.
    ttl = min((v.ttl for v in covered if v.ttl_type == TTLType.RELATIVE), default=DEFAULT_TTL_S)
    return HandleValue(
        index=signature_index(values),
        type=HS_SIGNATURE,
        data=data,
        ttl=ttl,
        timestamp=now,
        permissions=int(DEFAULT_PERMISSIONS),
    )


def with_signature(
    handle: str,
    values: Sequence[HandleValue],
    key: SigningKey,
    issuer: str,
    *,
    now: int,
    lifetime_s: int,
    chain: Sequence[str] = (),
) -> tuple[HandleValue, ...]:
    """``values`` with every HS_SIGNATURE replaced by a fresh one (at the old index)."""
    signature = sign_record(
        handle, values, key, issuer, now=now, lifetime_s=lifetime_s, chain=chain
    )
    return (*tuple(v for v in values if not is_signature(v)), signature)


# --- verification: values -------------------------------------------------------------------


def _b64_any(text: str) -> bytes | None:
    cleaned = text.strip().rstrip("=").replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def _claimed_digests(payload: Mapping[str, Any]) -> dict[int, bytes | None]:
    """index -> claimed digest (None when the digest is not base64)."""
    digests = payload.get("digests")
    if not isinstance(digests, dict) or not isinstance(digests.get("digests"), list):
        raise SignatureError("signature has no 'digests' object with a 'digests' list")
    alg = digests.get("alg")
    if not isinstance(alg, str) or alg.upper() != DIGEST_ALG:
        raise SignatureError(f"digest algorithm {alg!r} is not supported (SHA-256 only)")
    claimed: dict[int, bytes | None] = {}
    for item in digests["digests"]:
        index = item.get("index") if isinstance(item, dict) else None
        digest = item.get("digest") if isinstance(item, dict) else None
        if isinstance(index, bool) or not isinstance(index, int) or not isinstance(digest, str):
            raise SignatureError("a digest entry lacks an integer 'index' or a string 'digest'")
        claimed[index] = _b64_any(digest)
    return claimed


def _check_values(
    values: Sequence[HandleValue], claimed: Mapping[int, bytes | None] | None, why: str = ""
) -> tuple[ValueCheck, ...]:
    """One status per value, then one per claimed digest with no value. ``claimed`` None:
    the signature could not be read, so nothing counts as covered."""
    checks: list[ValueCheck] = []
    present: set[int] = set()
    for v in values:
        present.add(v.index)
        if is_signature(v):
            checks.append(ValueCheck(v.index, v.type, ValueStatus.SIGNATURE))
        elif claimed is not None and v.index in claimed:
            want = claimed[v.index]
            if want is None:
                checks.append(
                    ValueCheck(v.index, v.type, ValueStatus.MISMATCHED, "digest is not base64")
                )
            elif want == value_digest(v):
                checks.append(ValueCheck(v.index, v.type, ValueStatus.COVERED))
            else:
                checks.append(
                    ValueCheck(v.index, v.type, ValueStatus.MISMATCHED, "changed since signing")
                )
        elif v.public_read:
            checks.append(
                ValueCheck(v.index, v.type, ValueStatus.UNCOVERED, why or "not in the signature")
            )
        else:
            checks.append(ValueCheck(v.index, v.type, ValueStatus.NOT_PUBLIC, "needs no digest"))
    checks += [
        ValueCheck(index, None, ValueStatus.MISSING, "signed but absent from the record")
        for index in claimed or ()
        if index not in present
    ]
    return tuple(checks)


# --- verification: the chain -----------------------------------------------------------------


@dataclass(slots=True)
class _Walk:
    """Accumulates what the chain walk finds."""

    handle: str
    certs: dict[str, str]
    root_ids: frozenset[bytes]
    roots: Sequence[PublicKey]
    now: int
    links: list[ChainLink]
    problems: list[ChainProblem]
    signature_valid: bool = False
    root_reached: bool = False

    def problem(self, reason: Problem, where: str, detail: str) -> None:
        self.problems.append(ChainProblem(reason, where, detail))

    def check_dates(self, claims: Claims, where: str) -> None:
        found = claims.time_problem(self.now)
        if found is not None:
            reason, detail = found
            self.problem(Problem(reason), where, detail)

    def check_perms(self, perms: Sequence[CertPerm], holder: str, where: str) -> None:
        if not authorizes(perms, self.handle):
            grants = ", ".join(map(str, perms)) or "no permissions"
            self.problem(
                Problem.WRONG_PERMS, where, f"{holder} holds {grants}; none covers {self.handle}"
            )

    def lookup(self, link: str, issuer: str) -> tuple[str, str] | None:
        for name in (link, issuer):
            token = self.certs.get(canonical_reference(name))
            if token is not None:
                return name, token
        return None


def _walk_chain(walk: _Walk, jws: Jws, claims: Claims, where: str) -> None:
    cert: Cert | None = None  # the certificate ``jws`` is, None for the signature itself
    pending: list[str] = list(claims.chain)
    asked: set[str] = set()
    while True:
        if cert is not None and claims.self_issued:
            verifies = jws_verify(jws, cert.public_key)
            if not verifies:
                walk.problem(Problem.BAD_SIGNATURE, where, "self-signature does not verify")
            walk.check_dates(claims, where)
            walk.check_perms(cert.perms, claims.sub, where)
            trusted = public_key_id(cert.public_key) in walk.root_ids
            if not trusted:
                walk.problem(
                    Problem.UNKNOWN_ROOT, where, f"{claims.sub} is self-signed by an untrusted key"
                )
            walk.root_reached = verifies and trusted
            walk.links.append(_link(where, jws, claims, "itself (root)", cert.perms))
            return
        issuer = claims.iss
        if canonical_reference(issuer) in asked or len(walk.links) >= MAX_CHAIN_LENGTH:
            walk.problem(Problem.MALFORMED, where, "certificate chain loops or is too long")
            return
        asked.add(canonical_reference(issuer))
        if not pending:
            pending = list(claims.chain) or [split_reference(issuer)[1]]
        found = walk.lookup(pending.pop(0), issuer)
        if found is None:
            if any(jws_verify(jws, root) for root in walk.roots):
                walk.signature_valid = walk.signature_valid or cert is None
                walk.root_reached = True
                walk.check_dates(claims, where)
                walk.links.append(_link(where, jws, claims, "a trusted root key"))
                return
            walk.problem(Problem.MISSING_CERTIFICATE, where, f"no certificate for {issuer}")
            return
        name, token = found
        cert_where = f"certificate {name}"
        try:
            parent = parse_cert(token)
        except SignatureError as exc:
            walk.problem(Problem.MALFORMED, cert_where, exc.message)
            return
        if not same_reference(parent.subject, issuer):
            walk.problem(
                Problem.MISSING_CERTIFICATE,
                where,
                f"{cert_where} certifies {parent.subject}, not the issuer {issuer}",
            )
            return
        cert_where = f"certificate {parent.subject}"
        if jws_verify(jws, parent.public_key):
            walk.signature_valid = walk.signature_valid or cert is None
        else:
            walk.problem(
                Problem.BAD_SIGNATURE,
                where,
                f"does not verify under the key certified for {issuer} (alg {jws.alg or '?'})",
            )
        walk.check_dates(claims, where)
        walk.check_perms(parent.perms, issuer, cert_where)
        walk.links.append(_link(where, jws, claims, cert_where, parent.perms))
        jws, claims, where, cert = parent.jws, parent.claims, cert_where, parent


def _link(
    where: str, jws: Jws, claims: Claims, verified_by: str, perms: Sequence[CertPerm] = ()
) -> ChainLink:
    return ChainLink(
        where, claims.sub, claims.iss, jws.alg, claims.nbf, claims.exp, verified_by, tuple(perms)
    )


# --- verification: entry point -------------------------------------------------------------


def verify_record(
    handle: str,
    values: Sequence[HandleValue],
    *,
    certs: Mapping[str, str],
    roots: Sequence[PublicKey],
    now: int,
) -> Verification:
    """Check ``values`` of ``handle`` against their HS_SIGNATURE and its certificate chain.

    ``certs`` maps a chain entry or the ``index:handle`` a certificate certifies to the
    HS_CERT token; ``roots`` are the trusted keys. Never raises on bad input: everything
    wrong is in the result. With several HS_SIGNATURE values, the first (by index) that
    verifies wins, else the report on the lowest-indexed one is returned.
    """
    signatures = sorted((v for v in values if is_signature(v)), key=lambda v: v.index)
    if not signatures:
        return Verification(
            handle,
            None,
            None,
            _check_values(values, None, "the record is not signed"),
            (),
            (ChainProblem(Problem.UNSIGNED, "record", "no HS_SIGNATURE value"),),
            False,
            False,
        )
    normalised = {canonical_reference(name): token for name, token in certs.items()}
    root_ids = frozenset(public_key_id(root) for root in roots)
    reports = []
    for signature in signatures:
        report = _verify_one(handle, values, signature, normalised, roots, root_ids, now)
        if report.ok:
            return report
        reports.append(report)
    return reports[0]


def _verify_one(
    handle: str,
    values: Sequence[HandleValue],
    signature: HandleValue,
    certs: dict[str, str],
    roots: Sequence[PublicKey],
    root_ids: frozenset[bytes],
    now: int,
) -> Verification:
    where = f"HS_SIGNATURE {signature.index}"
    try:
        jws = jws_parse(signature.data)
        claims = parse_claims(jws.payload)
        claimed = _claimed_digests(jws.payload)
    except SignatureError as exc:
        return Verification(
            handle,
            signature.index,
            None,
            _check_values(values, None, "the signature is unreadable"),
            (),
            (ChainProblem(Problem.MALFORMED, where, exc.message),),
            False,
            False,
        )
    # The node's lookup folds ASCII case in the whole handle (docs/protocol.md), so a signature for
    # 88.118.2/ROLL-0001 covers the record a client reaches as 88.118.2/roll-0001. (The
    # reference compares suffixes case-sensitively.) Permissions are then checked against
    # the handle as signed.
    same = upper_ascii(claims.sub) == upper_ascii(handle)
    walk = _Walk(claims.sub if same else handle, certs, root_ids, roots, now, [], [])
    if not same:
        walk.problem(Problem.WRONG_HANDLE, where, f"signs {claims.sub}, not {handle}")
    _walk_chain(walk, jws, claims, where)
    return Verification(
        handle,
        signature.index,
        claims.iss,
        _check_values(values, claimed),
        tuple(walk.links),
        tuple(walk.problems),
        walk.signature_valid,
        walk.root_reached,
    )
