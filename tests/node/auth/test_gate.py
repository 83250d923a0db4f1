"""Units of the authentication gate (node.auth.gate, checks, proxies, ratelimit): failures
reserved before checks, attempts waiting for room, the worker pool's bound and its
round-robin order across sources, the time budget, and the real client behind trusted
proxies. Worker threads are real; waits are on events, never on sleeps."""

from __future__ import annotations

import asyncio
import re
import threading

import pytest

from node.app import Node
from node.auth.checks import CheckPool, PoolBusy
from node.auth.gate import AuthGate
from node.auth.identity import CredentialsRejected, TooManyFailures
from node.auth.proxies import TrustedProxies
from node.auth.ratelimit import FailureLimiter
from node.auth.verifier import SecretKeyVerifier
from node.secrets.legacy import hash_secret
from protocol.values import HandleValue
from tests.node.abuse_auth_support import plant_values
from tests.node.http_support import SteppedClock
from tests.node.wait_support import until


def test_reserved_failures_count_until_given_back() -> None:
    lim = FailureLimiter(2, 60.0)
    assert lim.has_room("a", 0)
    lim.reserve("a")
    lim.reserve("a")
    assert not lim.has_room("a", 0) and lim.retry_after("a", 0) is None  # in flight: wait
    lim.settle("a", 1, failed=False)  # a success gives its reservation back
    assert lim.has_room("a", 1) and lim.pending("a") == 1
    lim.settle("a", 2, failed=True)
    lim.reserve("a")
    lim.settle("a", 3, failed=True)
    assert not lim.has_room("a", 3) and lim.retry_after("a", 3) == 59
    assert lim.has_room("a", 62.5) and lim.pending("a") == 0


async def test_the_pool_serves_sources_in_turn_and_is_bounded() -> None:
    pool = CheckPool(workers=1, queue_max=5, per_source_max=3)
    hold = threading.Event()
    order: list[str] = []

    def job(name: str) -> str:
        if name == "a0":
            hold.wait(30)
        order.append(name)
        return name

    tasks = [asyncio.create_task(pool.run("a", job, "a0"))]
    await until(lambda: pool.running == 1)
    # The flood queued first...
    tasks += [asyncio.create_task(pool.run("a", job, name)) for name in ("a1", "a2", "a3")]
    await until(lambda: pool.waiting == 3)
    with pytest.raises(PoolBusy):
        await pool.run("a", job, "a4")  # ...holding its share of the queue
    tasks.append(asyncio.create_task(pool.run("b", job, "b1")))  # ...then a real login
    await until(lambda: pool.waiting == 4)
    tasks.append(asyncio.create_task(pool.run("c", job, "c1")))
    await until(lambda: pool.waiting == 5)
    with pytest.raises(PoolBusy):
        await pool.run("d", job, "d1")  # the whole queue is full
    hold.set()
    assert await asyncio.gather(*tasks) == ["a0", "a1", "a2", "a3", "b1", "c1"]
    assert order == ["a0", "a1", "b1", "c1", "a2", "a3"]  # one turn each per round
    assert (pool.running, pool.waiting) == (0, 0)


async def test_a_cancelled_waiter_gives_its_place_back() -> None:
    pool = CheckPool(workers=1, queue_max=2)
    hold = threading.Event()
    first = asyncio.create_task(pool.run("a", hold.wait, 30))
    await until(lambda: pool.running == 1)
    waiter = asyncio.create_task(pool.run("b", lambda: "b"))
    await until(lambda: pool.waiting == 1)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert pool.waiting == 0
    hold.set()
    assert await first is True
    assert await pool.run("c", lambda: "c") == "c" and pool.running == 0


def _gate(clock: SteppedClock) -> AuthGate:
    return AuthGate(
        max_failures=2, identity_max_failures=3, window_s=60.0, queue_max=8, monotonic=clock
    )


async def test_attempts_wait_for_room_held_by_checks_in_flight() -> None:
    """Three logins at once with a limit of two: the third waits for one to end, and
    runs when that one succeeded; once the failures fill the window, it is refused."""
    clock = SteppedClock()
    gate = _gate(clock)
    go = [threading.Event() for _ in range(3)]
    results: list[str] = []

    async def login(n: int, right: bool) -> None:
        async with gate.attempt("198.51.100.1/32", "88.118.2/ADMIN") as attempt:
            await attempt.run(go[n].wait, 30)
            if right:
                attempt.succeeded()
        results.append(f"{n}:{right}")

    tasks = [asyncio.create_task(login(n, right=n != 1)) for n in range(2)]
    await until(lambda: gate.clients.pending("198.51.100.1/32") == 2)
    third = asyncio.create_task(login(2, right=True))
    await until(lambda: len(gate._waiting_clients.get("198.51.100.1/32", ())) == 1)
    go[0].set()  # a success: its room is given back, the third goes
    await until(lambda: gate.clients.pending("198.51.100.1/32") == 2 and not gate._waiting_clients)
    go[1].set()
    go[2].set()
    await asyncio.gather(*tasks, third)
    assert sorted(results) == ["0:True", "1:False", "2:True"]
    async with gate.attempt("198.51.100.1/32", None) as attempt:
        await attempt.run(lambda: None)  # checked, not proven: the second failure
    with pytest.raises(TooManyFailures, match=re.escape("198.51.100.1; retry in 60 s")):
        async with gate.attempt("198.51.100.1/32", None):
            pass
    assert gate.identities.retry_after("88.118.2/ADMIN", clock()) is None  # 1 failure of 3


async def test_a_refused_or_unchecked_attempt_costs_no_failure() -> None:
    clock = SteppedClock()
    gate = _gate(clock)
    for _ in range(5):
        async with gate.attempt("203.0.113.1/32", "X"):
            pass  # nothing checked (the record could not be read, say)
    assert gate.clients.has_room("203.0.113.1/32", clock())


class TickingClock:
    """A monotonic clock that moves ``tick_s`` each time it is read (from any thread)."""

    def __init__(self, tick_s: float):
        self.tick_s = tick_s
        self.now = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            self.now += self.tick_s
            return self.now


async def test_the_time_budget_stops_trying_keys(http_node: Node, database_url: str) -> None:
    """On a clock that moves 0.6 s at every reading, each check (timed by two readings)
    costs 0.6 s: the admin's sealed secret (300) and the hash at 301 spend the 1 s budget,
    so 302 and 303 (the right one) are not tried, and counted. The node's own vault and
    registry; only the clock is ours."""
    assert http_node.db is not None and http_node.vault is not None
    clock = TickingClock(0.6)
    gate = AuthGate(
        max_failures=10,
        identity_max_failures=10,
        window_s=60,
        queue_max=8,
        monotonic=clock,
        metrics=http_node.metrics,
        budget_s=1.0,
    )
    await plant_values(
        database_url,
        "88.118.2/ADMIN",
        [HandleValue(300 + n, "HS_SECKEY", hash_secret(f"s{n}".encode(), 1000)) for n in (1, 2, 3)],
    )
    verifier = SecretKeyVerifier(http_node.db.registry, http_node.vault, gate, monotonic=clock)
    with pytest.raises(CredentialsRejected, match="authentication failed"):
        await verifier.verify("88.118.2/ADMIN", 0, b"s3", client="c")
    skipped = http_node.metrics.registry.get_sample_value(
        "idnode_auth_keys_skipped_total", {"reason": "budget"}
    )
    assert skipped == 2  # 300 and 301 tried (1.2 s), 302 and 303 not
    identity = await verifier.verify("88.118.2/ADMIN", 303, b"s3", client="c")
    assert identity.actor == "303:88.118.2/ADMIN"


@pytest.mark.parametrize(
    ("peer", "header", "client"),
    [
        ("203.0.113.5", "198.51.100.1", "203.0.113.5"),  # not our proxy: header ignored
        ("127.0.0.1", None, "127.0.0.1"),  # our proxy, but no header: the proxy
        ("127.0.0.1", "198.51.100.1", "198.51.100.1"),
        ("127.0.0.1", "6.6.6.6, 198.51.100.1", "198.51.100.1"),  # the left is the client's
        ("127.0.0.1", "198.51.100.1, 10.0.0.2, 127.0.0.1", "198.51.100.1"),  # our proxies
        ("::1", "[2001:db8::7]:4711", "2001:db8::7"),
        ("::ffff:127.0.0.1", "198.51.100.1:80", "198.51.100.1"),
        ("127.0.0.1", "10.0.0.3, 127.0.0.1", "10.0.0.3"),  # every hop ours: leftmost
        ("127.0.0.1", "198.51.100.1, garbage", "127.0.0.1"),  # believe no further
    ],
)
def test_the_client_behind_trusted_proxies(peer: str, header: str | None, client: str) -> None:
    proxies = TrustedProxies(["127.0.0.0/8", "::1/128", "10.0.0.2/32"])
    headers = {"X-Forwarded-For": header} if header is not None else {}
    assert proxies.client(peer, headers) == client


def test_client_keys() -> None:
    gate = _gate(SteppedClock())
    assert gate.client_key("198.51.100.1") == "198.51.100.1/32"
    assert gate.client_key("2001:db8:1:2:3::9") == "2001:db8:1:2::/64"
    assert gate.client_key("127.0.0.1") == "127.0.0.1/32"  # loopback is no exception here
    assert gate.client_key(None) == "unknown"
