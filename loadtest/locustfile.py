"""Realistic traffic on a node's HTTP API, for locust (``pip install 'idnode[load]'``).

Two kinds of users, as a textile secondary node sees them:

- ``Partner`` (most users): downstream systems and people resolving identifiers.
  Roll identifiers are drawn by Zipf popularity (s=1.1) over the bulk-loaded rolls
  ``88.118.2/ROLL-2026-0000000`` .. ``--rolls``-1, so a few are hot and most are cold;
  some ask only for the URL (``?type=URL``), some scan a label (``GET /<h>`` with
  ``Accept: text/html``: a 302 to the record's URL), some open the record page
  (``?noredirect``), some resolve the demo's trace chain (yarn lot, dye lot,
  finished roll, lifts), and a few ask for rolls that do not exist (404 expected).
- ``Mes`` (a few users): a factory's MES registering new greige rolls as they come off
  the loom, and correcting one now and then: ``PUT /api/handles/...`` with Basic
  credentials of the enterprise admin (``300:88.118.2/ADMIN`` of the demo data).

Headless, fixed duration, CSV report (a node with the demo data and bulk rolls:
``loadtest/locust_run.py`` starts one and runs exactly this):

    .venv/bin/locust -f loadtest/locustfile.py --headless -u 50 -r 10 -t 30s \\
        --csv loadtest/out/locust --host http://127.0.0.1:8000 --rolls 100000
"""

from __future__ import annotations

import itertools
import random
import sys
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # locust imports this by path

from locust import HttpUser, between, events, task

from loadtest.lag import basic_auth
from loadtest.rolls import roll_handle
from loadtest.zipf import ZipfKeys
from node.demo.dataset import PONGEE, SILK_MILL, demo_dataset, greige_roll

# The demo's traceable records (not the admin handles or the templates).
DEMO_HANDLES = [
    h.handle for h in demo_dataset().handles if "/ADMIN" not in h.handle and "/TPL." not in h.handle
]
MISSING_BASE = 9_000_000  # roll numbers from here on are never loaded


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument(
        "--rolls", type=int, default=100_000, help="bulk rolls in the registry (0..N-1)"
    )
    parser.add_argument("--zipf-s", type=float, default=1.1)
    parser.add_argument(
        "--admin", default="300:88.118.2/ADMIN", help="MES credentials: admin handle"
    )
    parser.add_argument(
        "--secret", default=SILK_MILL.admin_secret, help="MES credentials: its secret"
    )


_zipf: ZipfKeys | None = None


def popular_roll(options: Any) -> str:
    """A roll drawn by popularity; one shared sampler (its table is rolls floats)."""
    global _zipf
    if _zipf is None or _zipf.n != options.rolls:
        _zipf = ZipfKeys(options.rolls, options.zipf_s)
    return roll_handle(_zipf.key())


class Partner(HttpUser):
    weight = 9
    wait_time = between(0.05, 0.5)

    @task(10)
    def resolve(self) -> None:
        self.client.get(
            f"/api/handles/{popular_roll(self.environment.parsed_options)}",
            name="/api/handles/[roll]",
        )

    @task(3)
    def resolve_url_only(self) -> None:
        self.client.get(
            f"/api/handles/{popular_roll(self.environment.parsed_options)}?type=URL",
            name="/api/handles/[roll]?type=URL",
        )

    @task(2)
    def trace_chain(self) -> None:
        self.client.get(f"/api/handles/{random.choice(DEMO_HANDLES)}", name="/api/handles/[demo]")

    @task(2)
    def scan_label(self) -> None:
        # A phone scanning a roll's QR label: the proxy answers 302 to the record's URL
        # (a trace site we do not follow here).
        handle = popular_roll(self.environment.parsed_options)
        with self.client.get(
            f"/{handle}",
            headers={"Accept": "text/html"},
            allow_redirects=False,
            name="/[roll] (label scan)",
            catch_response=True,
        ) as r:
            if r.status_code == 302:
                r.success()
            else:
                r.failure(f"expected a 302 to the roll's URL, got {r.status_code}")

    @task(1)
    def record_page(self) -> None:
        handle = popular_roll(self.environment.parsed_options)
        self.client.get(
            f"/{handle}?noredirect",
            headers={"Accept": "text/html"},
            name="/[roll]?noredirect (page)",
        )

    @task(1)
    def not_registered(self) -> None:
        handle = roll_handle(MISSING_BASE + random.randrange(100_000))
        with self.client.get(
            f"/api/handles/{handle}", name="/api/handles/[missing]", catch_response=True
        ) as r:
            if r.status_code == 404:
                r.success()
            else:
                r.failure(f"expected 404 for an unregistered roll, got {r.status_code}")


class Mes(HttpUser):
    weight = 1
    wait_time = between(0.2, 1.0)

    def on_start(self) -> None:
        opts = self.environment.parsed_options
        # Handle.Net clients percent-encode the user (300%3A88.118.2%2FADMIN) in Basic.
        self.auth = {"Authorization": basic_auth(opts.admin, opts.secret)}
        self.tag = uuid.uuid4().hex[:6].upper()
        self.numbers = itertools.count()
        self.mine: list[str] = []

    def _roll(self, number: str, length: str) -> tuple[str, list[dict[str, Any]]]:
        record = greige_roll(number, PONGEE, "150", "62", length, "2026-03-20")
        return record.handle, record.values

    @task(5)
    def register(self) -> None:
        handle, values = self._roll(f"M{self.tag}{next(self.numbers):05d}", "100.0")
        r = self.client.put(
            f"/api/handles/{handle}", json=values, headers=self.auth, name="/api/handles/[new roll]"
        )
        if r.status_code in (200, 201):
            self.mine.append(handle)

    @task(1)
    def correct(self) -> None:
        if not self.mine:
            return
        handle = random.choice(self.mine)
        number = handle.rpartition("-")[2]
        _, values = self._roll(number, random.choice(("99.5", "100.5", "98.0")))
        self.client.put(
            f"/api/handles/{handle}",
            json=values,
            headers=self.auth,
            name="/api/handles/[correction]",
        )
