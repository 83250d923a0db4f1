"""``RecordSigner.sign`` for a million records (docs/import.md): the same HS_SIGNATURE,
built from value digests the caller keeps.

Signing one 16-field record costs ~200 µs, three quarters of it re-encoding and hashing
values (``protocol.recordsig.value_digest``) that an import repeats on almost every row
(the same mill, fabric code, grade...). Here a value's digest is computed once per
distinct value (``Piece``) and the claims are composed exactly as
``protocol.recordsig.sign_record`` composes them, so the JWS signing input is byte for
byte what ``RecordSigner.sign`` would produce at the same time (tests/node/writes prove
it); only the ECDSA signature itself, randomised by nature, differs.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass

from node.signing.signer import RecordSigner, handle_node_prefix
from protocol.certs import base_claims
from protocol.codes import DEFAULT_PERMISSIONS, TTLType
from protocol.errors import LocalProtocolError
from protocol.jose import jws_sign
from protocol.recordsig import DIGEST_ALG, HS_SIGNATURE, is_signature, needs_cover, value_digest
from protocol.valuecodec import value_to_wire
from protocol.values import DEFAULT_TTL_S, MAX_DATA_BYTES, HandleValue


@dataclass(frozen=True, slots=True)
class Piece:
    """A value with what every record holding it needs: its wire form and, when a
    signature covers it (public, not a signature), its digest as the claims spell it."""

    value: HandleValue
    wire: bytes
    digest: str | None
    signature: bool  # an HS_SIGNATURE (replaced by the fresh one)

    @classmethod
    def of(cls, value: HandleValue) -> Piece:
        digest = (
            base64.b64encode(value_digest(value)).decode("ascii") if needs_cover(value) else None
        )
        return cls(value, value_to_wire(value), digest, is_signature(value))


Issuer = tuple[str, tuple[str, ...]]
MAX_ISSUERS = 1024


class BulkSigner:
    def __init__(self, signer: RecordSigner):
        self.signer = signer
        self._issuers: dict[tuple[str, int], Issuer | None] = {}

    def issuer(self, handle: str, now: int) -> Issuer | None:
        """``RecordSigner.issuer_for``, asked once per node prefix and time."""
        key = (handle_node_prefix(handle), now)
        if key not in self._issuers:
            if len(self._issuers) > MAX_ISSUERS:  # one per prefix and second: keep few
                self._issuers.clear()
            self._issuers[key] = self.signer.issuer_for(handle, now)
        return self._issuers[key]

    def signature(
        self, handle: str, covered: Sequence[Piece], index: int, now: int, issuer: Issuer
    ) -> HandleValue:
        """The HS_SIGNATURE at ``index`` over ``covered`` (every public value but
        signatures, in record order), as ``protocol.recordsig.sign_record`` makes it."""
        iss, chain = issuer
        claims = base_claims(iss, handle, now=now, lifetime_s=self.signer.lifetime_s, chain=chain)
        claims["digests"] = {
            "alg": DIGEST_ALG,
            "digests": [{"index": p.value.index, "digest": p.digest} for p in covered],
        }
        data = jws_sign(claims, self.signer.key).encode("ascii")
        if len(data) > MAX_DATA_BYTES:
            raise LocalProtocolError(
                f"HS_SIGNATURE for {len(covered)} values is {len(data)} bytes, over the "
                f"{MAX_DATA_BYTES}-byte value limit"
            )
        # A cache must not hold the signature longer than the values it vouches for.
        ttl = min(
            (p.value.ttl for p in covered if p.value.ttl_type == TTLType.RELATIVE),
            default=DEFAULT_TTL_S,
        )
        return HandleValue(
            index=index,
            type=HS_SIGNATURE,
            data=data,
            ttl=ttl,
            timestamp=now,
            permissions=int(DEFAULT_PERMISSIONS),
        )
