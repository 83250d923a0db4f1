"""The prefix lifecycle as a reviewed workflow (migration 0008, docs/enterprises.md).

An enterprise applies for a prefix (it is registered, or registered again after a
rejection, as awaiting review); an auditor moves it through review; an operator at the
command line may set any status. Each step is one transaction that locks the prefix row,
checks the step against the rules below, changes the status and appends who did it and
why to ``prefix_reviews``: two reviewers deciding at once cannot both move one status,
and no status changes through idnode without its row. The change notifies every node
(migration 0004), so an enabled prefix is served everywhere at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import asyncpg

from protocol.errors import HandleSyntaxError
from protocol.handle import normalise, parse_prefix
from registry.driver import Conn, translated
from registry.errors import Conflict, NotFound, RegistryError
from registry.queries import q
from registry.rows import Prefix, PrefixReview, PrefixStatus

APPLY, REVIEW, OPERATOR = "apply", "review", "operator"
MAX_REASON_CHARS = 2000

S = PrefixStatus
# What a review may decide, by the prefix's current status. Entering review is not a
# review: an application registers a prefix as awaiting review, or brings a rejected one
# back there (the enterprise applies again).
REVIEWS: Mapping[PrefixStatus, frozenset[PrefixStatus]] = {
    S.AWAITING_REVIEW: frozenset({S.UNDER_REVIEW, S.REJECTED}),
    S.UNDER_REVIEW: frozenset({S.ENABLED, S.REJECTED}),
    S.ENABLED: frozenset({S.DISABLED, S.PENDING_DELETION}),
    S.DISABLED: frozenset({S.ENABLED, S.PENDING_DELETION}),
    S.PENDING_DELETION: frozenset({S.DISABLED}),
    S.REJECTED: frozenset(),
}
# Decisions that take something away say why (the database checks it too).
REASON_REQUIRED = frozenset({S.REJECTED, S.DISABLED, S.PENDING_DELETION})


class TransitionRefused(Conflict):
    """A review cannot move the prefix from its current status to the one asked."""


class ReasonRequired(RegistryError):
    """Rejecting, disabling or scheduling a prefix for deletion needs a reason."""


def _name(status: PrefixStatus) -> str:
    return f"{status.label} (status {int(status)})"


def review_refusal(prefix: str, current: PrefixStatus, to: PrefixStatus) -> Conflict | None:
    """Why a review may not move ``prefix`` from ``current`` to ``to``; None if it may."""
    allowed = REVIEWS[current]
    if to in allowed:
        return None
    if not allowed:
        return TransitionRefused(
            f"prefix {prefix} is {_name(current)}: no review follows; it returns to review "
            "when its enterprise applies again"
        )
    choices = " or ".join(_name(s) for s in sorted(allowed))
    return TransitionRefused(
        f"prefix {prefix} is {_name(current)}: a review may make it {choices}, not {_name(to)}"
    )


def checked_reason(reason: str, to: PrefixStatus | None = None) -> str:
    """``reason`` trimmed; ReasonRequired when ``to`` needs one and it is empty."""
    reason = reason.strip()
    if len(reason) > MAX_REASON_CHARS:
        raise RegistryError(f"the reason is longer than {MAX_REASON_CHARS} characters")
    if to in REASON_REQUIRED and not reason:
        raise ReasonRequired(f"say why: a reason is required to make a prefix {to.label}")
    return reason


def _checked_prefix(prefix: str) -> str:
    try:
        return parse_prefix(prefix)
    except HandleSyntaxError as exc:
        raise RegistryError(str(exc)) from None


def _prefix(r: Any) -> Prefix:
    """A ``get_prefix`` row (the mapping ``Registry`` makes of it; repeated here so the
    two modules share the query, not a private helper)."""
    return Prefix(
        r["prefix"],
        r["prefix_key"],
        PrefixStatus(r["status"]),
        r["credit_code"],
        r["enterprise_name"],
        r["created_at"],
        r["updated_at"],
    )


def _review(r: Any) -> PrefixReview:
    return PrefixReview(
        r["id"],
        r["prefix"],
        r["credit_code"],
        r["action"],
        None if r["from_status"] is None else PrefixStatus(r["from_status"]),
        PrefixStatus(r["to_status"]),
        r["actor"],
        r["reason"],
        r["at"],
    )


class PrefixReviews:
    """Every method commits before it returns and raises only ``registry.errors``."""

    def __init__(self, pool: asyncpg.Pool[Any], *, target: str = "the registry database"):
        self.pool = pool
        self.target = target

    @translated
    async def apply(
        self, prefix: str, credit_code: str, *, actor: str, reason: str, now: datetime
    ) -> tuple[Prefix, PrefixReview]:
        """The enterprise ``credit_code`` applies for ``prefix``: registered as awaiting
        review, or back there after a rejection of its own application."""
        prefix, reason = _checked_prefix(prefix), checked_reason(reason)
        to = S.AWAITING_REVIEW
        async with self.pool.acquire() as conn, conn.transaction():
            enterprise_id = await _enterprise(conn, credit_code)
            row = await conn.fetchrow(q("review_lock_prefix"), normalise(prefix))
            if row is None:
                await _insert(conn, prefix, enterprise_id, to, now)
                return await _step(conn, prefix, enterprise_id, None, to, APPLY, actor, reason, now)
            held, before = row["prefix"], PrefixStatus(row["status"])
            if row["enterprise_id"] != enterprise_id:
                raise Conflict(f"prefix {held} is registered to another enterprise")
            if before != S.REJECTED:
                raise Conflict(
                    f"prefix {held} is already registered, {_name(before)}; only a rejected "
                    "application can be made again"
                )
            await conn.execute(q("set_prefix_status"), normalise(held), int(to), now)
            return await _step(conn, held, enterprise_id, before, to, APPLY, actor, reason, now)

    @translated
    async def review(
        self, prefix: str, to: PrefixStatus, *, actor: str, reason: str, now: datetime
    ) -> tuple[Prefix, PrefixReview]:
        """A reviewer's decision; only the moves of ``REVIEWS``."""
        to = PrefixStatus(to)
        reason = checked_reason(reason, to)
        return await self._move(prefix, to, REVIEW, actor, reason, now)

    @translated
    async def set_status(
        self, prefix: str, to: PrefixStatus, *, actor: str, reason: str, now: datetime
    ) -> tuple[Prefix, PrefixReview]:
        """An operator sets any status (``idnode prefix set-status``), recorded as such."""
        return await self._move(
            prefix, PrefixStatus(to), OPERATOR, actor, checked_reason(reason), now
        )

    @translated
    async def register(
        self,
        prefix: str,
        credit_code: str,
        status: PrefixStatus,
        *,
        actor: str,
        reason: str,
        now: datetime,
    ) -> tuple[Prefix, PrefixReview]:
        """An operator registers a prefix in any status (``idnode prefix add``)."""
        prefix, reason, to = _checked_prefix(prefix), checked_reason(reason), PrefixStatus(status)
        async with self.pool.acquire() as conn, conn.transaction():
            enterprise_id = await _enterprise(conn, credit_code)
            await _insert(conn, prefix, enterprise_id, to, now)
            return await _step(conn, prefix, enterprise_id, None, to, OPERATOR, actor, reason, now)

    @translated
    async def history(self, prefix: str) -> list[PrefixReview]:
        """The recorded steps of a prefix, oldest first: NotFound when it is neither
        registered nor has a trail (one registered before migration 0008, or by the demo
        seed, starts with none)."""
        key = normalise(prefix)
        rows = [_review(r) for r in await self.pool.fetch(q("list_prefix_reviews"), key)]
        if not rows and await self.pool.fetchval(q("get_prefix"), key) is None:
            raise NotFound(f"prefix {prefix} is not registered")
        return rows

    async def _move(
        self, prefix: str, to: PrefixStatus, action: str, actor: str, reason: str, now: datetime
    ) -> tuple[Prefix, PrefixReview]:
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(q("review_lock_prefix"), normalise(prefix))
            if row is None:
                raise NotFound(f"prefix {prefix} is not registered")
            held, before = row["prefix"], PrefixStatus(row["status"])
            if action == REVIEW:
                refusal = review_refusal(held, before, to)
                if refusal is not None:
                    raise refusal
            await conn.execute(q("set_prefix_status"), normalise(held), int(to), now)
            return await _step(
                conn, held, row["enterprise_id"], before, to, action, actor, reason, now
            )


async def _enterprise(conn: Conn, credit_code: str) -> int:
    ent = await conn.fetchrow(q("get_enterprise_by_code"), credit_code)
    if ent is None:
        raise NotFound(f"no enterprise with credit code {credit_code}")
    return int(ent["id"])


async def _insert(
    conn: Conn, prefix: str, enterprise_id: int, status: PrefixStatus, now: datetime
) -> None:
    try:
        await conn.execute(
            q("add_prefix"), normalise(prefix), prefix, enterprise_id, int(status), now
        )
    except asyncpg.UniqueViolationError:
        raise Conflict(f"prefix {prefix} is already registered") from None


async def _step(
    conn: Conn,
    prefix: str,
    enterprise_id: int,
    before: PrefixStatus | None,
    to: PrefixStatus,
    action: str,
    actor: str,
    reason: str,
    now: datetime,
) -> tuple[Prefix, PrefixReview]:
    """Append the review row of a change just made in ``conn``'s transaction; the prefix
    as it now is, and the row."""
    if not actor.strip():
        raise RegistryError("a prefix status change needs an actor")
    key = normalise(prefix)
    from_status = None if before is None else int(before)
    review_id = await conn.fetchval(
        q("add_prefix_review"),
        key,
        prefix,
        enterprise_id,
        action,
        from_status,
        int(to),
        actor,
        reason,
        now,
    )
    row = _prefix(await conn.fetchrow(q("get_prefix"), key))
    return row, PrefixReview(
        review_id, row.prefix, row.credit_code, action, before, to, actor, reason, now
    )
