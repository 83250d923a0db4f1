"""A real node with everything ``/metrics`` can show: the demo data, the periodic gauges
(node.runtime.gauges) and the access log (node.runtime.accesslog) wired as ``Node.start``
wires them, and a scrape of its admin port as Prometheus would make it.

``observe`` repeats that wiring; applying it to a node that already has it is harmless
(the gauges feed one ``GaugeSet``, the access-log middleware is added once), so these
tests hold before and after the node wires it itself.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from node.app import Node
from node.fronts.http.access import access_log_routes
from node.runtime.accesslog import AccessLog
from node.runtime.gauges import PeriodicGauges
from node.settings import load_settings
from node.signing.expiry import signing_cert_expiry
from tests.node.http_support import SteppedClock

# Long enough never to run by itself during a test: tests call refresh() when they want.
TEST_INTERVAL_S = 3600.0


def promtool() -> str:
    """promtool's path; the test is skipped, saying why, where it is not installed
    (.ci/run installs Debian's prometheus package, which ships it)."""
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool is not installed (Debian package prometheus): cannot run it")
    return path


def run_promtool(*args: str, stdin: str | None = None, cwd: Path | None = None) -> str:
    done = subprocess.run(
        [promtool(), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )
    output = (done.stdout + done.stderr).strip()
    assert done.returncode == 0, f"promtool {' '.join(args)} failed:\n{output}"
    return output


async def observe(node: Node, *, interval_s: float = TEST_INTERVAL_S) -> PeriodicGauges:
    """Wire the pool, the access log and the periodic gauges into a started node, as
    ``Node.start`` does; the caller stops the gauges."""
    assert node.db is not None and node.resolver is not None
    resolver = node.resolver
    node.metrics.gauges.pool = node.db.registry.pool
    node.metrics.access = AccessLog.from_settings(node.settings)
    gauges = PeriodicGauges(
        node.metrics.gauges,
        node.db.registry,
        clock=node.clock,
        data_dir=node.settings.data_dir,
        certs=lambda now: signing_cert_expiry(node.signer, resolver.served.all(), now),
        interval_s=interval_s,
    )
    await gauges.start()
    return gauges


@asynccontextmanager
async def observed_node(
    database_url: str, data_dir: Path, **flags: Any
) -> AsyncIterator[tuple[Node, PeriodicGauges]]:
    """A started node with the demo data on loopback, observed (``observe``)."""
    settings = load_settings(
        env={},
        flags={
            "database_url": database_url,
            "data_dir": str(data_dir),
            "bind": "127.0.0.1",
            "handle_port": 0,
            "admin_port": 0,
            "http_port": 0,
            "demo": True,
            **flags,
        },
    )
    node = Node(settings, monotonic=SteppedClock())
    node.http_extensions.append(access_log_routes())
    await node.start()
    try:
        gauges = await observe(node)
        try:
            yield node, gauges
        finally:
            await gauges.stop()
    finally:
        await node.stop()


async def scrape(node: Node) -> str:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{node.admin_port}/metrics") as reply,
    ):
        assert reply.status == 200
        return await reply.text()


def exposed_names(text: str) -> set[str]:
    """Every series name a PromQL query can use on this exposition: the samples', and
    for families without samples yet (a labelled counter nothing has counted) the names
    their type gives them."""
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_count", "_sum", "_created"),
        "summary": ("", "_count", "_sum", "_created"),
        "info": ("_info",),
    }
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.update(s.name for s in family.samples)
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
    return names
