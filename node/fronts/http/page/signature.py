"""The record page's verification status line (docs/signing.md, README "Signed records").

The page's public values are checked with ``protocol.recordsig.verify_record`` against
the node's own trust roots (``HttpServices.trust_roots``); the certificates the
signature names come from the node's ``0.NA/<prefix>`` records, resolved through the
node's resolver (no HTTP round trip).
"""

from __future__ import annotations

from node.fronts.http.services import HttpServices
from node.resolution.outcomes import Found
from node.signing.trust import collect_certs
from protocol.recordsig import is_signature, verify_record
from protocol.sigreport import Problem, ValueStatus, Verification
from protocol.values import HandleValue

VALID = "✓ 签名有效 · Signature valid"
INVALID = "✗ 签名无效 · Signature invalid"
UNSIGNED = "未签名 · Unsigned"
VIA_UPSTREAM = "经标识解析体系获取 · Resolved through the tree from the prefix's own node"


def reasons(report: Verification) -> str:
    """What is wrong, naming the values concerned."""
    parts = [
        f"value {c.index}{' ' + c.type if c.type else ''} {c.status}"
        for c in report.values
        if c.status in (ValueStatus.MISMATCHED, ValueStatus.UNCOVERED)
    ]
    parts += [f"{p.reason} ({p.where})" for p in report.problems]
    if not parts and not report.signature_valid:
        parts.append("signature not verified")
    return "; ".join(parts)


def status_text(report: Verification) -> str:
    if report.ok:
        alg = report.chain[0].alg if report.chain else "?"
        return f"{VALID} (signed by {report.signer}, {alg})"
    if report.reasons() == {Problem.UNSIGNED}:
        return UNSIGNED
    return f"{INVALID}: {reasons(report)}"


async def status_line(
    svc: HttpServices,
    handle: str,
    values: tuple[HandleValue, ...],
    now: float,
    *,
    forward: bool = False,
) -> str | None:
    """The line for the page, or None when there is nothing to say (no values, or no
    trust root on this node and the record is signed)."""
    if not values:
        return None
    if not any(is_signature(v) for v in values):
        return UNSIGNED
    if not svc.trust_roots:
        return None

    async def fetch(name: str) -> tuple[HandleValue, ...] | None:
        found = await svc.resolver.resolve(name, (), (), now, public_only=True, forward=forward)
        return found.values if isinstance(found, Found) else None

    certs = await collect_certs(values, fetch)
    report = verify_record(handle, values, certs=certs, roots=svc.trust_roots, now=int(now))
    return status_text(report)
