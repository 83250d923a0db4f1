"""Enterprise onboarding (docs/enterprises.md): an enterprise applies for a prefix under
one of this node's own prefixes, an auditor reviews it, and enabling it creates the
enterprise's admin identity ``<prefix>/ADMIN`` with a fresh secret, handed over once.

The steps and their records are the registry's (``registry.reviews``); who may take
which step is the caller's to decide (``node.auth.roles`` for the HTTP management API;
the operator at the command line may take any). The admin identity is written through
the write service like every record: its secret sealed, the record signed, the write in
the handle history. The prefix's ``0.NA`` record follows from the registration
(``node.resolution.site``), so enabling the row is what makes every node serve it.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from node.errors import NodeError
from node.secrets.vault import SECKEY_TYPE
from node.signing.signer import node_prefix
from node.writes.service import WriteService
from protocol.codes import ALL_ADMIN_PERMS, DEFAULT_PERMISSIONS, Permission
from protocol.handle import normalise, parse_handle, parse_prefix, prefix_ancestors
from protocol.structured import AdminRef, encode_admin
from protocol.values import HandleValue
from registry.errors import Conflict
from registry.reviews import PrefixReviews, TransitionRefused
from registry.rows import Prefix, PrefixReview, PrefixStatus
from registry.store import Registry

log = logging.getLogger("idnode.onboarding")

ADMIN_VALUE_INDEX = 100  # HS_ADMIN of <prefix>/ADMIN, naming itself
SECRET_INDEX = 300  # HS_SECKEY: the identity is 300:<prefix>/ADMIN (docs/idis.md)
SECRET_BYTES = 32  # of randomness; token_urlsafe makes 43 characters of them
ADMIN_ONLY = int(Permission.ADMIN_READ | Permission.ADMIN_WRITE)  # "1100"

S = PrefixStatus
# ``idnode enterprise onboard``: the reviews from each status to enabled.
TO_ENABLED: dict[PrefixStatus, tuple[PrefixStatus, ...]] = {
    S.AWAITING_REVIEW: (S.UNDER_REVIEW, S.ENABLED),
    S.UNDER_REVIEW: (S.ENABLED,),
    S.DISABLED: (S.ENABLED,),
    S.ENABLED: (),
}


class NotUnderThisNode(NodeError):
    """The prefix applied for is not under one of this node's own prefixes."""


class AdminNotCreated(NodeError):
    """The prefix was enabled, but its admin identity could not be written."""


@dataclass(frozen=True, slots=True)
class Credentials:
    """An enterprise admin identity and its secret, shown once: the registry keeps the
    secret sealed and never hands it out again. ``repr`` leaves the secret out, so no
    log line or traceback can carry it."""

    prefix: str
    admin: str  # 300:<prefix>/ADMIN
    secret: str = field(repr=False)

    def to_json(self) -> dict[str, str]:
        return {"prefix": self.prefix, "admin": self.admin, "secret": self.secret}


@dataclass(frozen=True, slots=True)
class Step:
    prefix: Prefix  # as it now is
    review: PrefixReview  # the row recording the step
    credentials: Credentials | None = None  # when it enabled the prefix and made its admin


def admin_values(handle: str, secret: str) -> list[HandleValue]:
    admin = AdminRef(handle, SECRET_INDEX, int(ALL_ADMIN_PERMS))
    return [
        HandleValue(
            ADMIN_VALUE_INDEX, "HS_ADMIN", encode_admin(admin), permissions=int(DEFAULT_PERMISSIONS)
        ),
        HandleValue(SECRET_INDEX, SECKEY_TYPE, secret.encode("ascii"), permissions=ADMIN_ONLY),
    ]


class Onboarding:
    def __init__(
        self,
        registry: Registry,
        writes: WriteService | None,
        *,
        configured: Sequence[str] = (),
        source: str = "manage",
    ):
        self.registry = registry
        self.reviews = PrefixReviews(registry.pool, target=registry.target)
        self.writes = writes  # None: this caller never enables (no admin identity to write)
        self.configured = tuple(configured)  # the ``prefixes`` setting
        self.source = source  # the writes metric's label

    async def own_parent(self, prefix: str, credit_code: str) -> str:
        """The own prefix of this node that ``prefix`` lies under: a configured or homed
        prefix, or an enabled registered node prefix (``88.118``). Between the two, a
        prefix registered to another enterprise (``88.118.2`` for ``88.118.2.7``) is
        theirs to derive from: Conflict."""
        own = {normalise(p) for p in self.configured}
        own |= {normalise(p) for p in await self.registry.list_homed_prefixes()}
        for ancestor in prefix_ancestors(prefix)[1:]:
            if normalise(ancestor) in own:
                return ancestor
            row = await self.registry.get_prefix(ancestor)
            if row is None:
                continue
            if row.status == S.ENABLED and node_prefix(row.prefix) == row.prefix_key:
                return row.prefix
            if row.credit_code != credit_code:
                raise Conflict(
                    f"prefix {prefix} lies under {row.prefix}, registered to another enterprise"
                )
        raise NotUnderThisNode(
            f"prefix {prefix} is not under a prefix of this node: apply for one under "
            f"{', '.join(await self.own_prefixes()) or 'a prefix this node serves'}"
        )

    async def own_prefixes(self) -> list[str]:
        registered = [
            p.prefix
            for p in await self.registry.list_prefixes()
            if p.status == S.ENABLED and node_prefix(p.prefix) == p.prefix_key
        ]
        homed = await self.registry.list_homed_prefixes()
        return sorted({normalise(p): p for p in (*self.configured, *homed, *registered)}.values())

    async def apply(
        self, prefix: str, credit_code: str, *, actor: str, reason: str, now: datetime
    ) -> Step:
        """``credit_code`` applies for ``prefix`` (awaiting review)."""
        prefix = parse_prefix(prefix)
        await self.own_parent(prefix, credit_code)
        row, review = await self.reviews.apply(
            prefix, credit_code, actor=actor, reason=reason, now=now
        )
        return Step(row, review)

    async def review(
        self, prefix: str, to: PrefixStatus, *, actor: str, reason: str, now: datetime
    ) -> Step:
        """A review decision; enabling a prefix that has no admin identity creates it."""
        row, review = await self.reviews.review(prefix, to, actor=actor, reason=reason, now=now)
        credentials = None
        if review.to_status == S.ENABLED:
            credentials = await self.admin_identity(row, actor=actor, now=now)
        return Step(row, review, credentials)

    async def admin_identity(self, row: Prefix, *, actor: str, now: datetime) -> Credentials | None:
        """Create ``<prefix>/ADMIN`` of an enabled prefix (HS_ADMIN naming itself, HS_SECKEY
        at 300 with a fresh secret) unless it exists; its credentials when created here.

        The status change has committed by then (the write service writes in a
        transaction of its own): if the write fails, the prefix stays enabled without
        an admin, and ``onboard`` run again creates just the missing identity."""
        try:
            return await self._create_admin(row.prefix, actor=actor, now=now)
        except Exception as exc:
            log.error(
                "prefix %s is enabled, but %s/ADMIN was not created: %s",
                row.prefix,
                row.prefix,
                exc,
            )
            raise AdminNotCreated(
                f"prefix {row.prefix} is enabled, but its admin identity {row.prefix}/ADMIN "
                f"could not be created ({exc}); create it with: idnode enterprise onboard "
                f"--prefix {row.prefix} --credit-code {row.credit_code} --name "
                f"'{row.enterprise_name}' (it takes only the missing steps)"
            ) from exc

    async def _create_admin(self, prefix: str, *, actor: str, now: datetime) -> Credentials | None:
        assert self.writes is not None, "enabling a prefix needs the write service"
        handle = parse_handle(f"{prefix}/ADMIN")
        if await self.registry.get_handle(handle.key) is not None:
            return None  # enabled again: the enterprise keeps the identity it has
        secret = secrets.token_urlsafe(SECRET_BYTES)
        try:
            await self.writes.put(
                handle,
                admin_values(handle.text, secret),
                actor=actor,
                now=now,
                source=self.source,
                overwrite=False,  # never replace an admin's secret
            )
        except Conflict:
            return None  # created meanwhile (another review's): its secret was handed over there
        return Credentials(prefix, f"{SECRET_INDEX}:{handle.text}", secret)

    async def onboard(
        self,
        *,
        name: str,
        credit_code: str,
        contact: str,
        prefix: str,
        actor: str,
        reason: str,
        now: datetime,
    ) -> tuple[Prefix, Credentials | None]:
        """The operator's whole path, each step recorded: the enterprise (added if
        missing), its application, the reviews to enabled, the admin identity. Safe to
        run again: it takes only the steps still missing (credentials None when the admin
        identity already existed)."""
        prefix = parse_prefix(prefix)
        if await self.registry.get_enterprise(credit_code) is None:
            with contextlib.suppress(Conflict):  # added meanwhile
                await self.registry.add_enterprise(name, credit_code, contact, now)
        row = await self.registry.get_prefix(prefix)
        if row is not None and row.credit_code != credit_code:
            raise Conflict(f"prefix {row.prefix} is registered to another enterprise")
        if row is None or row.status == S.REJECTED:
            row = (
                await self.apply(prefix, credit_code, actor=actor, reason=reason, now=now)
            ).prefix
        if row.status not in TO_ENABLED:
            raise TransitionRefused(
                f"prefix {row.prefix} is {row.status.label} (status {int(row.status)}): onboard "
                "does not enable it from there; review it to disabled first"
            )
        for to in TO_ENABLED[row.status]:
            row, _ = await self.reviews.review(prefix, to, actor=actor, reason=reason, now=now)
        return row, await self.admin_identity(row, actor=actor, now=now)
