"""The periodic gauges (node.runtime.gauges) on a real node over PostgreSQL: identifiers
per prefix and enterprise as the handles table counts them, bounded to the top N plus
``other``; database size and data-dir space; docking outbox and unfinished imports;
signing certificates' time left; a registry that fails keeps the last figures."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from prometheus_client import CollectorRegistry

from node.app import Node
from node.runtime.gauges import OTHER, GaugeSet, PeriodicGauges, top_with_other
from node.signing.expiry import signing_cert_expiry
from node.signing.signer import RecordSigner, grants
from protocol.certs import make_cert
from protocol.jose import SigningKey
from registry.bulk import ImportStore
from registry.connect import open_registry
from registry.docking import DockingOutbox, Wanted
from tests.node.runtime.observed_support import observed_node

NOW = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture
async def node(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[Node, PeriodicGauges]]:
    async with observed_node(database_url, tmp_path / "node") as started:
        yield started


def value(node: Node, name: str, **labels: str) -> float | None:
    return node.metrics.registry.get_sample_value(name, labels)


async def counts_in_pg(url: str) -> dict[str, int]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT p.prefix, count(h.handle_key) AS n FROM prefixes p "
            "LEFT JOIN handles h ON h.prefix_key = p.prefix_key GROUP BY p.prefix"
        )
    finally:
        await conn.close()
    return {r["prefix"]: int(r["n"]) for r in rows}


def test_top_with_other_keeps_the_largest_and_sums_the_rest() -> None:
    counts = [(("a",), 5), (("b",), 9), (("c",), 1), (("d",), 2), (("b",), 1)]
    assert top_with_other(counts, 2) == [(("b",), 10), (("a",), 5), ((OTHER,), 3)]
    assert top_with_other(counts, 4) == [(("b",), 10), (("a",), 5), (("d",), 2), (("c",), 1)]
    assert top_with_other([], 2) == []
    pairs = [(("x", "X"), 3), (("y", "Y"), 1)]
    assert top_with_other(pairs, 1) == [(("x", "X"), 3), ((OTHER, OTHER), 1)]


async def test_identifiers_per_prefix_and_enterprise_match_the_registry(
    node: tuple[Node, PeriodicGauges], database_url: str
) -> None:
    n, _ = node
    expected = await counts_in_pg(database_url)
    assert sum(expected.values()) > 10, "the demo data is there"
    for prefix, count in expected.items():
        assert value(n, "idnode_prefix_identifiers", prefix=prefix) == count, prefix
    assert value(n, "idnode_prefix_identifiers", prefix=OTHER) is None  # under 200 prefixes
    assert n.db is not None
    by_enterprise: dict[str, int] = {}
    for p in await n.db.registry.list_prefixes():
        by_enterprise[p.credit_code] = by_enterprise.get(p.credit_code, 0) + expected[p.prefix]
    families = {f.name: f for f in n.metrics.registry.collect()}
    exposed = {
        s.labels["enterprise"]: s.value for s in families["idnode_enterprise_identifiers"].samples
    }
    assert exposed == by_enterprise
    assert all(s.labels["name"] for s in families["idnode_enterprise_identifiers"].samples)


async def test_label_cardinality_is_bounded_by_top(node: tuple[Node, PeriodicGauges]) -> None:
    n, _ = node
    all_prefixes = {
        s.labels["prefix"]: s.value
        for f in n.metrics.registry.collect()
        if f.name == "idnode_prefix_identifiers"
        for s in f.samples
    }
    assert len(all_prefixes) > 3
    n.metrics.gauges.top = 2
    kept = {
        s.labels["prefix"]: s.value
        for f in n.metrics.registry.collect()
        if f.name == "idnode_prefix_identifiers"
        for s in f.samples
    }
    assert len(kept) == 3 and OTHER in kept
    largest = sorted(all_prefixes.values(), reverse=True)
    assert sorted(v for p, v in kept.items() if p != OTHER) == sorted(largest[:2])
    assert kept[OTHER] == sum(largest[2:])
    assert sum(kept.values()) == sum(all_prefixes.values())


async def test_counts_follow_writes_at_the_next_refresh_not_before(
    node: tuple[Node, PeriodicGauges], database_url: str
) -> None:
    n, gauges = node
    before = value(n, "idnode_prefix_identifiers", prefix="88.118.2")
    assert before is not None
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            'INSERT INTO handles (handle_key, handle, prefix_key, "values", created_at, updated_at) '
            "SELECT '88.118.2/GAUGE-' || i, '88.118.2/GAUGE-' || i, '88.118.2', "
            "'\\x00000000'::bytea, now(), now() FROM generate_series(1, 7) i"
        )
    finally:
        await conn.close()
    assert value(n, "idnode_prefix_identifiers", prefix="88.118.2") == before  # no query per scrape
    await gauges.refresh()
    assert value(n, "idnode_prefix_identifiers", prefix="88.118.2") == before + 7


async def test_database_size_and_data_dir_space(node: tuple[Node, PeriodicGauges]) -> None:
    n, _ = node
    size = value(n, "idnode_registry_database_bytes")
    assert size is not None and size > 1_000_000  # an empty PostgreSQL database is ~7 MB
    st = os.statvfs(n.settings.data_dir)
    assert value(n, "idnode_data_dir_size_bytes") == st.f_blocks * st.f_frsize
    free = value(n, "idnode_data_dir_free_bytes")
    assert free is not None and 0 < free <= st.f_blocks * st.f_frsize
    refreshed = value(n, "idnode_gauges_refreshed_timestamp_seconds")
    assert refreshed is not None and abs(refreshed - n.clock()) < 600
    assert value(n, "idnode_gauges_refresh_errors_total") == 0


async def test_docking_outbox_and_unfinished_imports(node: tuple[Node, PeriodicGauges]) -> None:
    n, gauges = node
    assert n.db is not None
    registry = n.db.registry
    for state in ("pending", "failed", "docked", "withdrawn"):
        assert value(n, "idnode_docking_prefixes", state=state) == 0
    assert value(n, "idnode_imports_unfinished") == 0
    outbox = DockingOutbox(registry.pool, target=registry.target)
    await outbox.want(Wanted("88.118", "register", None, b"\x00\x00\x00\x00"), NOW)
    await outbox.want(Wanted("88.118.2", "register", "88.118", b"\x00\x00\x00\x00"), NOW)
    store = ImportStore(registry)
    await store.start_job("job-1", actor="test", source="test", now=NOW)
    await store.start_job("job-2", actor="test", source="test", now=NOW)
    await store.finish_job("job-2", NOW)
    await gauges.refresh()
    assert value(n, "idnode_docking_prefixes", state="pending") == 2
    assert value(n, "idnode_docking_prefixes", state="docked") == 0
    assert value(n, "idnode_imports_unfinished") == 1
    for outcome in ("loaded", "existing", "rejected"):
        assert value(n, "idnode_import_rows", outcome=outcome) == 0


async def test_signing_certificate_time_left(node: tuple[Node, PeriodicGauges]) -> None:
    n, _ = node
    assert n.signer is not None  # the demo node signs with its embedded root
    families = {f.name: f for f in n.metrics.registry.collect()}
    samples = families["idnode_signing_cert_expiry_seconds"].samples
    assert {s.labels["cert"] for s in samples} >= {"400:0.NA/88.118", "400:0.NA/88.119"}
    life = 2 * n.settings.signature_lifetime_s  # certificates: twice a signature's life
    for s in samples:
        assert life - 3600 < s.value <= life, s


def test_a_deployment_certificate_is_what_expires() -> None:
    key = SigningKey(ec.generate_private_key(ec.SECP256R1()), "ES256", "node")
    top = SigningKey(ec.generate_private_key(ec.SECP256R1()), "ES256", "top")
    token = make_cert(
        top,
        "300:0.NA/88",
        "400:0.NA/88.118",
        key.public_key,
        grants("88.118"),
        now=1_000_000,
        lifetime_s=86_400,
    )
    signer = RecordSigner(key, 3600, deployment_cert=token)
    assert signing_cert_expiry(signer, ["88.118", "88.119.2"], 1_000_100) == {
        "400:0.NA/88.118": 1_000_000 + 86_400
    }
    assert signing_cert_expiry(None, ["88.118"], 1_000_100) == {}


async def test_a_failing_registry_keeps_the_last_figures(
    node: tuple[Node, PeriodicGauges], database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    n, _ = node
    before = value(n, "idnode_prefix_identifiers", prefix="88.118.2")
    refreshed = value(n, "idnode_gauges_refreshed_timestamp_seconds")
    gone = await open_registry(database_url, min_size=1, max_size=1, timeout_s=5)
    await gone.close()  # as if PostgreSQL went away
    broken = PeriodicGauges(
        n.metrics.gauges,
        gone,
        clock=lambda: 4_000_000_000.0,
        data_dir=n.settings.data_dir / "missing",
    )
    await broken.refresh()
    assert value(n, "idnode_prefix_identifiers", prefix="88.118.2") == before
    assert value(n, "idnode_gauges_refreshed_timestamp_seconds") == refreshed
    assert value(n, "idnode_gauges_refresh_errors_total") == 2  # the registry, the data dir
    assert "periodic gauges: cannot measure registry figures" in caplog.text


def test_a_gauge_set_shows_only_what_was_measured() -> None:
    registry = CollectorRegistry()
    GaugeSet(registry, lambda: "3")
    names = {f.name for f in registry.collect()}
    assert "idnode_prefix_identifiers" not in names
    assert "idnode_registry_database_bytes" not in names
    assert "idnode_gauges_refresh_errors" in names
    assert registry.get_sample_value("process_cpu_seconds_total", {"worker": "3"}) is not None
