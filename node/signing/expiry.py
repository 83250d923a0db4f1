"""When the certificates of the current record-signing key expire, for the node's
``idnode_signing_cert_expiry_seconds`` gauge (node.runtime.gauges).

With ``signing_cert_file`` that is the one certificate the top-level node issued: it
does not renew itself, and records signed after its notAfter no longer verify, so an
operator must get a new one in time. With the embedded root the node issues its own
certificate per node prefix and renews it at half its life, so the gauge mostly shows
that this is happening.
"""

from __future__ import annotations

from collections.abc import Iterable

from node.signing.signer import RecordSigner, node_prefix
from protocol.certs import parse_cert


def signing_cert_expiry(
    signer: RecordSigner | None, prefixes: Iterable[str], now: int
) -> dict[str, int]:
    """Subject -> notAfter (``exp``, unix seconds) of each certificate the current key
    signs under: the deployment certificate, or (embedded root) the one published in
    ``0.NA/<node prefix>`` for each node prefix of ``prefixes``. Certificates without an
    ``exp`` never expire and are left out."""
    if signer is None:
        return {}
    if signer.deployment_cert is not None:
        cert = parse_cert(signer.deployment_cert)
        exp = cert.claims.exp
        return {cert.subject: exp} if exp is not None else {}
    out: dict[str, int] = {}
    for prefix in sorted({node_prefix(p) for p in prefixes}):
        for value in signer.cert_values(prefix, now):
            if value.index == signer.key_index:
                cert = parse_cert(value.data)
                if cert.claims.exp is not None:
                    out[cert.subject] = cert.claims.exp
    return out
