"""What ``verify_record`` found, shaped for a CLI (``render``) and a web page (``to_json``).

Two lists: one status per value (and per digest whose value is gone), and the chain
problems, each naming the token it concerns and a human-readable reason. Mirrors the
reference's ``ValuesSignatureVerificationReport`` (verified / unsigned / badDigest /
missing values) and ``IssuedSignatureVerificationReport`` (signature verifies, date in
range, authorized) plus ``ChainVerificationReport.rootIsTrusted``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from .certs import CertPerm


class ValueStatus(enum.StrEnum):
    COVERED = "covered"  # digest in the signature matches
    UNCOVERED = "uncovered"  # public value the signature has no digest for
    MISMATCHED = "mismatched"  # digest differs: data, type, TTL, permissions or references changed
    MISSING = "missing"  # the signature has a digest for an index the record lacks
    NOT_PUBLIC = "not public"  # no public read and no digest: nothing to cover
    SIGNATURE = "signature"  # an HS_SIGNATURE value itself


class Problem(enum.StrEnum):
    EXPIRED = "expired"
    NOT_YET_VALID = "not yet valid"
    WRONG_PERMS = "wrong perms"
    UNKNOWN_ROOT = "unknown root"
    BAD_SIGNATURE = "bad signature"
    MISSING_CERTIFICATE = "missing certificate"
    MALFORMED = "malformed"
    WRONG_HANDLE = "wrong handle"  # the signature is for another handle (a replayed value)
    UNSIGNED = "unsigned"  # no HS_SIGNATURE value at all


@dataclass(frozen=True, slots=True)
class ValueCheck:
    index: int
    type: str | None  # None for a missing value
    status: ValueStatus
    detail: str = ""

    def __str__(self) -> str:
        what = f"value {self.index}" + (f" {self.type}" if self.type is not None else "")
        return f"{what}: {self.status}" + (f" ({self.detail})" if self.detail else "")


@dataclass(frozen=True, slots=True)
class ChainProblem:
    reason: Problem
    where: str  # "HS_SIGNATURE 400", "certificate 300:0.NA/88.118.2"
    detail: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}: {self.detail}"


@dataclass(frozen=True, slots=True)
class ChainLink:
    """One token on the path from the signature to the root, with who vouched for it."""

    where: str
    subject: str
    issuer: str
    alg: str
    not_before: int | None
    expires: int | None
    verified_by: str  # "certificate 300:0.NA/88", "itself (root)", "a trusted root key"
    perms: tuple[CertPerm, ...] = ()  # the grants the verifying key holds

    def __str__(self) -> str:
        return f"{self.where} ({self.alg}) issued by {self.issuer}, verified by {self.verified_by}"


@dataclass(frozen=True, slots=True)
class Verification:
    handle: str
    signature_index: int | None
    signer: str | None
    values: tuple[ValueCheck, ...]
    chain: tuple[ChainLink, ...]
    problems: tuple[ChainProblem, ...]
    signature_valid: bool
    root_reached: bool

    @property
    def ok(self) -> bool:
        """Signature verifies, chain reaches a root with no problem, no value uncovered or
        mismatched. Missing values do not fail it: a resolution filtered by type or index
        legitimately returns a subset of the signed record."""
        return (
            self.signature_valid
            and self.root_reached
            and not self.problems
            and not self.uncovered
            and not self.mismatched
        )

    def indexes(self, status: ValueStatus) -> tuple[int, ...]:
        return tuple(check.index for check in self.values if check.status == status)

    @property
    def covered(self) -> tuple[int, ...]:
        return self.indexes(ValueStatus.COVERED)

    @property
    def uncovered(self) -> tuple[int, ...]:
        return self.indexes(ValueStatus.UNCOVERED)

    @property
    def mismatched(self) -> tuple[int, ...]:
        return self.indexes(ValueStatus.MISMATCHED)

    @property
    def missing(self) -> tuple[int, ...]:
        return self.indexes(ValueStatus.MISSING)

    def reasons(self) -> frozenset[Problem]:
        return frozenset(problem.reason for problem in self.problems)

    def summary(self) -> str:
        if self.ok:
            return f"{self.handle}: VALID, signed by {self.signer}"
        parts = [str(reason) for reason in sorted(self.reasons())]
        for label, indexes in (
            ("uncovered", self.uncovered),
            ("mismatched", self.mismatched),
        ):
            if indexes:
                parts.append(f"{label} {', '.join(map(str, indexes))}")
        return f"{self.handle}: NOT VALID ({'; '.join(parts) or 'signature not verified'})"

    def render(self) -> str:
        """Multi-line text for ``idnode verify``."""
        lines = [self.summary()]
        lines += [f"  {check}" for check in self.values]
        if self.chain:
            lines.append("  chain:")
            lines += [f"    {link}" for link in self.chain]
        if self.problems:
            lines.append("  problems:")
            lines += [f"    {problem}" for problem in self.problems]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.render()

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict for the REST API and the browser page."""
        return {
            "handle": self.handle,
            "ok": self.ok,
            "summary": self.summary(),
            "signatureIndex": self.signature_index,
            "signer": self.signer,
            "signatureValid": self.signature_valid,
            "rootReached": self.root_reached,
            "values": [
                {"index": c.index, "type": c.type, "status": str(c.status), "detail": c.detail}
                for c in self.values
            ],
            "chain": [
                {
                    "where": link.where,
                    "subject": link.subject,
                    "issuer": link.issuer,
                    "alg": link.alg,
                    "nbf": link.not_before,
                    "exp": link.expires,
                    "verifiedBy": link.verified_by,
                    "perms": [p.to_json() for p in link.perms],
                }
                for link in self.chain
            ],
            "problems": [
                {"reason": str(p.reason), "where": p.where, "detail": p.detail}
                for p in self.problems
            ],
        }
