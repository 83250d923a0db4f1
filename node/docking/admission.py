"""On a top-level node: the ``0.NA/<prefix>`` record that admits a secondary node's
prefix (``idnode upstream admit``), owned by the key the secondary authenticates with
(``idnode upstream identity`` there). The secondary then publishes its HS_SITE and
certificates into it, and registers its enterprises' prefixes as derived ones under it
(ADD_NA), all as ``300:0.NA/<prefix>`` (node.docking.service)."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, rsa

from node.docking.wanted import ADMIN_INDEX, IDENTITY_INDEX, identity_of
from protocol.codes import ALL_ADMIN_PERMS, DEFAULT_PERMISSIONS
from protocol.keys import PublicKey, encode_public_key
from protocol.structured import AdminRef, encode_admin
from protocol.values import HandleValue


def admission_values(prefix: str, key: PublicKey) -> tuple[HandleValue, ...]:
    """HS_PUBKEY (Handle key format for RSA and DSA, PEM text otherwise, as the IDIS SDKs
    write it) and an HS_ADMIN giving that identity every permission on the record and
    on derived prefixes under it."""
    if isinstance(key, rsa.RSAPublicKey | dsa.DSAPublicKey):
        data = encode_public_key(key)
    else:
        data = key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    admin = AdminRef(identity_of(prefix), IDENTITY_INDEX, int(ALL_ADMIN_PERMS))
    perms = int(DEFAULT_PERMISSIONS)
    return (
        HandleValue(ADMIN_INDEX, "HS_ADMIN", encode_admin(admin), permissions=perms),
        HandleValue(IDENTITY_INDEX, "HS_PUBKEY", data, permissions=perms),
    )
