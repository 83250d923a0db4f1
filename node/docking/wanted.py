"""What this node should have registered at the top-level node, prefix by prefix
(README "Docking"): pure, from the node's prefixes, its site and its certificates.

- an own prefix (the ``prefixes`` setting, 88.118): its ``0.NA`` record at the top was
  admitted by the top's operator (HS_PUBKEY, HS_ADMIN); the node publishes its HS_SITE,
  the same site as HS_SITE.PREFIX (so a derived prefix not registered on its own is
  referred here, RC 303) and the HS_CERT values of its signing keys there;
- a registered prefix under an own one (an enterprise's 88.118.2): registered as a
  derived prefix, ``0.NA/88.118.2`` with this node's HS_SITE and an HS_ADMIN naming the
  own prefix's identity, so the node can change or withdraw it later;
- a registered prefix not enabled, or one no longer registered: withdrawn.

Timestamps are zeroed: the same values make the same payload, so nothing is resent
until something really changed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace

from protocol.codes import ALL_ADMIN_PERMS, DEFAULT_PERMISSIONS
from protocol.handle import is_under, normalise
from protocol.structured import AdminRef, SiteInfo, encode_admin
from protocol.valuecodec import encode_values
from protocol.values import HandleValue
from registry.docking import Wanted
from registry.rows import Prefix, PrefixStatus

SITE_INDEX = 1
PREFIX_SITE_INDEX = 2
ADMIN_INDEX = 100
IDENTITY_INDEX = 300  # HS_PUBKEY of 0.NA/<own prefix> at the top: this node's identity
REGISTER, WITHDRAW = "register", "withdraw"


def identity_of(own_prefix: str) -> str:
    """The handle this node authenticates as at the top for ``own_prefix``."""
    return f"0.NA/{own_prefix}"


def wanted(
    own: Sequence[str],
    registered: Iterable[Prefix],
    known: Iterable[str],
    site: SiteInfo,
    certs: Callable[[str], tuple[HandleValue, ...]],
) -> list[Wanted]:
    """Everything that should be upstream; ``known`` are prefixes in the outbox already
    (withdrawn if no longer anything here)."""
    perms = int(DEFAULT_PERMISSIONS)
    site_value = HandleValue(SITE_INDEX, "HS_SITE", site.to_wire(), permissions=perms)
    out: dict[str, Wanted] = {}
    delegation = HandleValue(PREFIX_SITE_INDEX, "HS_SITE.PREFIX", site.to_wire(), permissions=perms)
    for prefix in own:
        values = (site_value, delegation, *certs(prefix))
        out[normalise(prefix)] = Wanted(prefix, REGISTER, None, _payload(values))
    for row in registered:
        if row.prefix_key in out:
            continue
        parent = next(
            (p for p in own if is_under(row.prefix, p) and normalise(p) != row.prefix_key), None
        )
        if parent is None:
            continue  # not under this node's prefixes: not ours to register
        if row.status != PrefixStatus.ENABLED:
            out[row.prefix_key] = Wanted(row.prefix, WITHDRAW, parent, b"")
            continue
        admin = AdminRef(identity_of(parent), IDENTITY_INDEX, int(ALL_ADMIN_PERMS))
        values = (
            site_value,
            HandleValue(ADMIN_INDEX, "HS_ADMIN", encode_admin(admin), permissions=perms),
        )
        out[row.prefix_key] = Wanted(row.prefix, REGISTER, parent, _payload(values))
    for prefix in known:
        if normalise(prefix) not in out:
            parent = next((p for p in own if is_under(prefix, p)), None)
            out[normalise(prefix)] = Wanted(prefix, WITHDRAW, parent, b"")
    return list(out.values())


def _payload(values: Iterable[HandleValue]) -> bytes:
    return encode_values([replace(v, timestamp=0) for v in values])
