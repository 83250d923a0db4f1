"""HS_CERT certificates, Handle v9 claims and what a certificate's permissions authorise.

Formats follow the Handle.Net 9 reference (``net.handle.hdllib.trust``):

- Claims (``HandleClaimsSet`` extends ``JwtClaimsSet``): ``iss``, ``sub``, ``iat``,
  ``nbf``, ``exp`` (seconds), ``chain`` (list of strings; "first element authorizes the
  issuer of this claims set, second element authorizes the issuer of that authorization"),
  and per use ``digests`` (HS_SIGNATURE) or ``publicKey`` + ``perms`` (HS_CERT).
- ``publicKey`` is a JWK (``GsonUtility.PublicKeyTypeHierarchyAdapter``: RSA n/e, DSA
  y/p/q/g; EC and OKP here are the RFC 7518 / 8037 forms), ``perms`` a list of
  ``{"handle": ..., "perm": ...}`` (``Permission``).
- Signers set ``nbf`` ten minutes before ``iat`` (``JoseSignHandleRecordOperation``,
  ``ResignCertAndHandleRecordOperation``) so a verifier whose clock lags still accepts;
  we do the same (``CLOCK_SKEW_S``). Verifiers apply no further leeway
  (``JwtClaimsSet.isDateInRange``: valid iff nbf <= now <= exp, a missing bound is open).

Permission semantics are ``HandleVerifier.verifyPermissionsAreAuthorizedOverHandle`` with
the ``Util`` helpers it calls; see ``authorizes``.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import LocalProtocolError, ProtocolError
from .jose import Jws, SignatureError, SigningKey, jws_parse, jws_sign
from .keys import PublicKey, public_key_from_jwk, public_key_to_jwk

CLOCK_SKEW_S = 600
MAX_CLAIM_INT = 2**53  # JSON numbers other implementations read exactly
_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
ZERO_NA = "0.NA"
ROOT_HANDLE = "0.NA/0.NA"


class Perm(enum.StrEnum):
    EVERYTHING = "everything"
    THIS_HANDLE = "thisHandle"
    DERIVED_PREFIXES = "derivedPrefixes"
    HANDLES_UNDER_THIS_PREFIX = "handlesUnderThisPrefix"


@dataclass(frozen=True, slots=True)
class CertPerm:
    """One grant: ``perm`` over ``handle`` (generally a prefix handle, ``0.NA/88.118``).
    ``perm`` stays a plain string after parsing: a grant we do not know authorises nothing,
    as in the reference, rather than making the whole certificate unreadable."""

    handle: str
    perm: str

    def to_json(self) -> dict[str, str]:
        return {"handle": self.handle, "perm": str(self.perm)}

    def __str__(self) -> str:
        return f"{self.perm} {self.handle}"


# --- handle comparisons, as the reference's Util does them ---------------------------------


def upper_ascii(text: str) -> str:
    """Handle case folding: ASCII a-z only (``Util.upperCase`` works on UTF-8 bytes)."""
    return text.translate(_ASCII_UPPER)


def canonical_handle(handle: str) -> str:
    """Prefix upper-cased; for ``0.NA/...`` handles all of it (``Util.upperCasePrefix``)."""
    prefix, slash, suffix = handle.partition("/")
    prefix = upper_ascii(prefix)
    if prefix == ZERO_NA:
        suffix = upper_ascii(suffix)
    return prefix + slash + suffix


def same_handle(a: str, b: str) -> bool:
    """``Util.equalsPrefixCI``. We also treat ``0.na/`` as global (the reference only checks
    a case-sensitive ``0.NA/``)."""
    return canonical_handle(a) == canonical_handle(b)


def split_reference(ref: str) -> tuple[int, str]:
    """``index:handle`` -> (index, handle); no numeric index -> (0, ref) (``ValueReference``)."""
    head, colon, tail = ref.partition(":")
    if colon and head.isascii() and head.isdigit():
        return int(head), tail
    return 0, ref


def canonical_reference(ref: str) -> str:
    """``index:handle`` or a bare handle, with the handle in canonical case."""
    index, handle = split_reference(ref)
    if handle == ref:  # no numeric index part
        return canonical_handle(ref)
    return f"{index}:{canonical_handle(handle)}"


def same_reference(a: str, b: str) -> bool:
    return canonical_reference(a) == canonical_reference(b)


def zero_na_handle(handle: str) -> str:
    """The prefix handle governing ``handle``: 88.118.2/X -> 0.NA/88.118.2 (``getZeroNAHandle``)."""
    prefix, slash, _ = handle.partition("/")
    return f"{ZERO_NA}/{upper_ascii(prefix)}" if slash else ROOT_HANDLE


def is_handle_under_prefix(handle: str, prefix_handle: str) -> bool:
    """``Util.isHandleUnderPrefix``: ``handle`` is directly under the prefix ``0.NA/P``,
    i.e. ``P/anything``. Sub-prefixes (P.1/x) are not under P."""
    prefix_handle = upper_ascii(prefix_handle)
    if not prefix_handle.startswith(ZERO_NA + "/"):
        return False
    return canonical_handle(handle).startswith(prefix_handle[len(ZERO_NA) + 1 :] + "/")


def is_derived_from(handle: str, ancestor: str) -> bool:
    """``Util.isDerivedFrom``: ``handle`` is a prefix handle ``0.NA/A.x...`` strictly below
    ``ancestor`` ``0.NA/A`` (``0.NA/A`` itself is not derived from itself)."""
    handle, ancestor = upper_ascii(handle), upper_ascii(ancestor)
    return handle.startswith(ZERO_NA + "/") and handle.startswith(ancestor + ".")


def authorizes(perms: Iterable[CertPerm], handle: str) -> bool:
    """Whether a key holding ``perms`` may sign for ``handle`` (the reference's
    ``verifyPermissionsAreAuthorizedOverHandle``):

    - everything: any handle.
    - thisHandle H: H itself, and if H is a prefix handle ``0.NA/P``, also ``P/anything``.
    - derivedPrefixes ``0.NA/P``: prefix handles ``0.NA/P.x...`` and every handle under
      them (``P.x/anything``, any depth) -- not ``P/anything`` and not ``0.NA/P``.
    - handlesUnderThisPrefix ``0.NA/P``: ``P/anything`` only.
    """
    for grant in perms:
        if grant.perm == Perm.EVERYTHING:
            return True
        if grant.perm == Perm.THIS_HANDLE:
            if same_handle(handle, grant.handle) or is_handle_under_prefix(handle, grant.handle):
                return True
        elif grant.perm == Perm.DERIVED_PREFIXES:
            if is_derived_from(handle, grant.handle) or is_derived_from(
                zero_na_handle(handle), grant.handle
            ):
                return True
        elif grant.perm == Perm.HANDLES_UNDER_THIS_PREFIX and is_handle_under_prefix(
            handle, grant.handle
        ):
            return True
    return False


# --- claims ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Claims:
    """The JWT-style claims every Handle v9 token carries."""

    iss: str
    sub: str
    iat: int | None
    nbf: int | None
    exp: int | None
    chain: tuple[str, ...]

    @property
    def self_issued(self) -> bool:
        return same_reference(self.iss, self.sub)

    def time_problem(self, now: int) -> tuple[str, str] | None:
        """("expired" | "not yet valid", detail) or None (``JwtClaimsSet.isDateInRange``)."""
        if self.exp is not None and now > self.exp:
            return "expired", f"expired at {_when(self.exp)} (now {_when(now)})"
        if self.nbf is not None and now < self.nbf:
            return "not yet valid", f"valid from {_when(self.nbf)} (now {_when(now)})"
        return None


def _when(seconds: int) -> str:
    """Pure formatting of a given instant (no clock read); out-of-range years stay numbers."""
    try:
        return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return f"{seconds}s"


def _claim_str(payload: Mapping[str, Any], name: str) -> str:
    value = payload.get(name)
    if not isinstance(value, str):
        raise SignatureError(f"claim {name!r} is missing or not a string")
    return value


def _claim_int(payload: Mapping[str, Any], name: str) -> int | None:
    value = payload.get(name)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():  # some JSON writers emit 1.7E9
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) > MAX_CLAIM_INT:
        raise SignatureError(f"claim {name!r} is not an integer number of seconds")
    return value


def parse_claims(payload: Mapping[str, Any]) -> Claims:
    chain = payload.get("chain")
    if chain is None:
        chain = []
    if not isinstance(chain, list) or not all(isinstance(link, str) for link in chain):
        raise SignatureError("claim 'chain' is not a list of strings")
    return Claims(
        iss=_claim_str(payload, "iss"),
        sub=_claim_str(payload, "sub"),
        iat=_claim_int(payload, "iat"),
        nbf=_claim_int(payload, "nbf"),
        exp=_claim_int(payload, "exp"),
        chain=tuple(chain),
    )


def base_claims(
    issuer: str, subject: str, *, now: int, lifetime_s: int, chain: Sequence[str]
) -> dict[str, Any]:
    if lifetime_s <= 0:
        raise LocalProtocolError(f"lifetime_s must be positive, got {lifetime_s}")
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": subject,
        "iat": now,
        "nbf": now - CLOCK_SKEW_S,
        "exp": now + lifetime_s,
    }
    if chain:  # the reference leaves a null chain out
        claims["chain"] = list(chain)
    return claims


# --- certificates -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class Cert:
    token: str
    jws: Jws
    claims: Claims
    public_key: PublicKey
    perms: tuple[CertPerm, ...]

    @property
    def subject(self) -> str:
        return self.claims.sub

    @property
    def issuer(self) -> str:
        return self.claims.iss


def make_cert(
    issuer_key: SigningKey,
    issuer: str,
    subject: str,
    subject_public_key: PublicKey,
    perms: Sequence[CertPerm],
    *,
    now: int,
    lifetime_s: int,
    chain: Sequence[str] = (),
) -> str:
    """An HS_CERT token: ``issuer`` (``index:handle``) vouches that ``subject``
    (``index:handle``) holds ``subject_public_key`` and may sign within ``perms``."""
    claims = base_claims(issuer, subject, now=now, lifetime_s=lifetime_s, chain=chain)
    claims["publicKey"] = public_key_to_jwk(subject_public_key)
    claims["perms"] = [p.to_json() for p in perms]
    return jws_sign(claims, issuer_key)


def self_signed_root(
    key: SigningKey, subject: str, perms: Sequence[CertPerm], now: int, lifetime_s: int
) -> str:
    """A self-issued certificate for ``key``: a chain ends there when the key is a trust
    root. (The reference additionally wants the subject's handle to be ``0.0/0.0``; we trust
    the configured root keys whatever the subject is named.)"""
    return make_cert(key, subject, subject, key.public_key, perms, now=now, lifetime_s=lifetime_s)


def _perms(raw: Any) -> tuple[CertPerm, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise SignatureError("claim 'perms' is not a list")
    perms = []
    for item in raw:
        if not isinstance(item, dict):
            raise SignatureError("a 'perms' entry is not an object")
        handle, perm = item.get("handle"), item.get("perm")
        if not isinstance(perm, str) or not isinstance(handle, str | None):
            raise SignatureError("a 'perms' entry lacks a string 'perm' or 'handle'")
        perms.append(CertPerm(handle or "", perm))
    return tuple(perms)


def parse_cert(token: str | bytes) -> Cert:
    """Parse (not verify) an HS_CERT token; ``SignatureError`` if it is not one."""
    jws = jws_parse(token)
    claims = parse_claims(jws.payload)
    jwk = jws.payload.get("publicKey")
    if not isinstance(jwk, dict):
        raise SignatureError("certificate has no 'publicKey' object")
    try:
        public_key = public_key_from_jwk(jwk)
    except ProtocolError as exc:
        raise SignatureError(f"certificate publicKey: {exc.message}") from None
    text = token if isinstance(token, str) else bytes(token).decode("ascii")
    return Cert(text.strip(), jws, claims, public_key, _perms(jws.payload.get("perms")))
