"""The prefix review workflow (registry.reviews) against a real PostgreSQL: which moves a
review may make, the row every step appends (who, why), what the database itself
enforces (append-only, a reason for taking something away), and the change feed that
carries a decision to every node."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import asyncpg
import pytest

from registry.errors import Conflict, NotFound, RegistryError
from registry.reviews import PrefixReviews, ReasonRequired, TransitionRefused
from registry.rows import PrefixStatus as S
from registry.store import Registry
from tests.registry.conftest import DYER, MILL, T0

AUDITOR = "300:88.118/AUDITOR"
ENTERPRISE = "300:88.118.2/ADMIN"


@pytest.fixture
def reviews(registry: Registry) -> PrefixReviews:
    return PrefixReviews(registry.pool)


async def trail(reviews: PrefixReviews, prefix: str) -> list[tuple[str, int | None, int, str, str]]:
    return [
        (r.action, r.from_status, int(r.to_status), r.actor, r.reason)
        for r in await reviews.history(prefix)
    ]


async def test_apply_review_enable_records_every_step(
    reviews: PrefixReviews, registry: Registry
) -> None:
    row, step = await reviews.apply(
        "88.118.7", MILL, actor=ENTERPRISE, reason="new dyeing line", now=T0
    )
    assert (row.prefix, row.status, row.credit_code) == ("88.118.7", S.AWAITING_REVIEW, MILL)
    assert (step.action, step.from_status, step.to_status) == ("apply", None, S.AWAITING_REVIEW)
    t1, t2 = T0 + timedelta(hours=1), T0 + timedelta(hours=2)
    row, _ = await reviews.review("88.118.7", S.UNDER_REVIEW, actor=AUDITOR, reason="", now=t1)
    assert row.status == S.UNDER_REVIEW
    row, step = await reviews.review(
        "88.118.7", S.ENABLED, actor=AUDITOR, reason="documents complete", now=t2
    )
    assert row.status == S.ENABLED and row.updated_at == t2
    assert step.at == t2 and step.credit_code == MILL
    prefix = await registry.get_prefix("88.118.7")
    assert prefix is not None and prefix.status == S.ENABLED
    assert await trail(reviews, "88.118.7") == [
        ("apply", None, 4, ENTERPRISE, "new dyeing line"),
        ("review", 4, 5, AUDITOR, ""),
        ("review", 5, 1, AUDITOR, "documents complete"),
    ]


@pytest.mark.parametrize(
    ("path", "to", "words"),
    [
        ((), S.ENABLED, ["awaiting review (status 4)", "not enabled (status 1)"]),
        ((), S.DISABLED, ["awaiting review (status 4)", "not disabled (status 0)"]),
        ((S.UNDER_REVIEW,), S.UNDER_REVIEW, ["under review (status 5)", "enabled (status 1)"]),
        ((S.UNDER_REVIEW, S.ENABLED), S.AWAITING_REVIEW, ["enabled (status 1)"]),
        ((S.REJECTED,), S.UNDER_REVIEW, ["rejected (status 3)", "applies again"]),
    ],
)
async def test_refused_moves_name_both_statuses_and_change_nothing(
    reviews: PrefixReviews, registry: Registry, path: tuple[S, ...], to: S, words: list[str]
) -> None:
    await reviews.apply("88.118.7", MILL, actor=ENTERPRISE, reason="", now=T0)
    for status in path:
        await reviews.review("88.118.7", status, actor=AUDITOR, reason="checked", now=T0)
    before = await trail(reviews, "88.118.7")
    with pytest.raises(TransitionRefused) as refused:
        await reviews.review("88.118.7", to, actor=AUDITOR, reason="why not", now=T0)
    for word in words:
        assert word in str(refused.value)
    assert "prefix 88.118.7" in str(refused.value)
    assert await trail(reviews, "88.118.7") == before
    row = await registry.get_prefix("88.118.7")
    assert row is not None and row.status == (path[-1] if path else S.AWAITING_REVIEW)


@pytest.mark.parametrize("reason", ["", "   "])
async def test_taking_away_needs_a_reason(
    reviews: PrefixReviews, registry: Registry, reason: str
) -> None:
    await reviews.apply("88.118.7", MILL, actor=ENTERPRISE, reason="", now=T0)
    with pytest.raises(ReasonRequired, match="rejected"):
        await reviews.review("88.118.7", S.REJECTED, actor=AUDITOR, reason=reason, now=T0)
    for to in (S.DISABLED, S.PENDING_DELETION):  # 88.118.2 is enabled
        with pytest.raises(ReasonRequired, match=to.label):
            await reviews.review("88.118.2", to, actor=AUDITOR, reason=reason, now=T0)
    row = await registry.get_prefix("88.118.2")
    assert row is not None and row.status == S.ENABLED
    assert await trail(reviews, "88.118.2") == []
    # The lifecycle of an enabled prefix, each step with its reason.
    await reviews.review("88.118.2", S.DISABLED, actor=AUDITOR, reason="audit lapsed", now=T0)
    await reviews.review("88.118.2", S.ENABLED, actor=AUDITOR, reason="", now=T0)
    await reviews.review("88.118.2", S.PENDING_DELETION, actor=AUDITOR, reason="closed", now=T0)
    assert [(f, t, why) for _, f, t, _, why in await trail(reviews, "88.118.2")] == [
        (1, 0, "audit lapsed"),
        (0, 1, ""),
        (1, 2, "closed"),
    ]


async def test_rejected_application_is_made_again_by_its_enterprise_only(
    reviews: PrefixReviews,
) -> None:
    await reviews.apply("88.118.7", MILL, actor=ENTERPRISE, reason="", now=T0)
    await reviews.review("88.118.7", S.REJECTED, actor=AUDITOR, reason="no licence", now=T0)
    with pytest.raises(Conflict, match="another enterprise"):
        await reviews.apply("88.118.7", DYER, actor="300:88.118.5/ADMIN", reason="", now=T0)
    row, step = await reviews.apply(
        "88.118.7", MILL, actor=ENTERPRISE, reason="licence attached", now=T0
    )
    assert row.status == S.AWAITING_REVIEW and step.from_status == S.REJECTED
    with pytest.raises(Conflict, match=r"already registered, awaiting review \(status 4\)"):
        await reviews.apply("88.118.7", MILL, actor=ENTERPRISE, reason="", now=T0)
    with pytest.raises(Conflict, match="enabled"):
        await reviews.apply("88.118.2", MILL, actor=ENTERPRISE, reason="", now=T0)


async def test_bad_input_is_refused_before_anything_is_written(reviews: PrefixReviews) -> None:
    with pytest.raises(NotFound, match="no enterprise"):
        await reviews.apply("88.118.7", "91320509MA1ZZZZZZ0", actor=ENTERPRISE, reason="", now=T0)
    with pytest.raises(RegistryError, match="prefix"):
        await reviews.apply("88..7", MILL, actor=ENTERPRISE, reason="", now=T0)
    with pytest.raises(RegistryError, match="2000"):
        await reviews.apply("88.118.7", MILL, actor=ENTERPRISE, reason="x" * 2001, now=T0)
    with pytest.raises(RegistryError, match="actor"):
        await reviews.apply("88.118.7", MILL, actor=" ", reason="", now=T0)
    with pytest.raises(NotFound, match="not registered"):
        await reviews.review("88.118.9", S.UNDER_REVIEW, actor=AUDITOR, reason="", now=T0)
    with pytest.raises(NotFound, match="not registered"):
        await reviews.history("88.118.7")  # the refused apply left nothing behind


async def test_operator_moves_anything_and_is_recorded_as_such(
    reviews: PrefixReviews, registry: Registry
) -> None:
    row, _ = await reviews.register("88.118.8", MILL, S.ENABLED, actor="cli:ops", reason="", now=T0)
    assert row.status == S.ENABLED
    await reviews.set_status("88.118.8", S.AWAITING_REVIEW, actor="cli:ops", reason="", now=T0)
    await reviews.set_status("88.118.8", S.REJECTED, actor="cli:ops", reason="", now=T0)
    assert await trail(reviews, "88.118.8") == [
        ("operator", None, 1, "cli:ops", ""),
        ("operator", 1, 4, "cli:ops", ""),
        ("operator", 4, 3, "cli:ops", ""),
    ]
    with pytest.raises(Conflict, match="already registered"):
        await reviews.register("88.118.8", MILL, S.ENABLED, actor="cli:ops", reason="", now=T0)


async def test_two_reviewers_at_once_cannot_both_decide(reviews: PrefixReviews) -> None:
    await reviews.apply("88.118.7", MILL, actor=ENTERPRISE, reason="", now=T0)
    await reviews.review("88.118.7", S.UNDER_REVIEW, actor=AUDITOR, reason="", now=T0)
    results = await asyncio.gather(
        reviews.review("88.118.7", S.ENABLED, actor="300:88.118/A1", reason="ok", now=T0),
        reviews.review("88.118.7", S.REJECTED, actor="300:88.118/A2", reason="no", now=T0),
        return_exceptions=True,
    )
    refused = [r for r in results if isinstance(r, TransitionRefused)]
    assert len(refused) == 1 and len(results) == 2
    steps = await trail(reviews, "88.118.7")
    assert len(steps) == 3 and steps[2][1] == 5  # the winner moved it from under review


async def test_the_trail_is_append_only_and_checked_by_the_database(
    reviews: PrefixReviews, database_url: str
) -> None:
    await reviews.apply("88.118.7", MILL, actor=ENTERPRISE, reason="", now=T0)
    conn = await asyncpg.connect(database_url)
    try:
        for sql in (
            "UPDATE prefix_reviews SET actor = 'someone else'",
            "DELETE FROM prefix_reviews",
            "TRUNCATE prefix_reviews",
        ):
            with pytest.raises(asyncpg.RaiseError, match="append-only"):
                await conn.execute(sql)
        # A review that rejects without a reason cannot be written even behind idnode's back.
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(
                "INSERT INTO prefix_reviews (prefix_key, prefix, enterprise_id, action,"
                " from_status, to_status, actor, reason, at)"
                " SELECT '88.118.7', '88.118.7', id, 'review', 4, 3, 'x', ' ', now()"
                " FROM enterprises LIMIT 1"
            )
        assert await conn.fetchval("SELECT actor FROM prefix_reviews") == ENTERPRISE
    finally:
        await conn.close()


async def test_a_decision_reaches_every_node_through_the_change_feed(
    reviews: PrefixReviews, database_url: str
) -> None:
    """Nodes re-read their prefixes on ``idnode_prefixes`` (migration 0004): a review is
    an UPDATE of the prefix row, so it is announced once committed."""
    await reviews.apply("88.118.7", MILL, actor=ENTERPRISE, reason="", now=T0)
    conn = await asyncpg.connect(database_url)
    heard: asyncio.Queue[str] = asyncio.Queue()
    try:
        await conn.add_listener("idnode_prefixes", lambda *args: heard.put_nowait(args[3]))
        await reviews.review("88.118.7", S.UNDER_REVIEW, actor=AUDITOR, reason="", now=T0)
        payload = await asyncio.wait_for(heard.get(), 10)
        assert payload.splitlines()[1:] == ["88.118.7"]
    finally:
        await conn.close()
