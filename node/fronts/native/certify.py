"""Certified (CERT) native replies: which are signed, and what a signature may cost.

A signature with the site's RSA-2048 key costs about 1 ms of CPU, against some 20 µs
for a cached answer, and a CERT request is a 60-byte datagram from an address nobody
checked; signing them in the event loop let one source at 3,000 datagrams/s stop every
other answer. So:

- **Errors are not signed for unauthenticated callers.** Signed, for them, are only the
  replies that answer the question: the record (RC 1), that it or the values asked for
  do not exist (RC 100, 200), a referral (RC 302, 303), and a challenge (RC 402). The
  reference client verifies every reply to a CERT request, and an unsigned one costs it
  three UDP re-sends and then fails as "unverifiable" (docs/protocol.md, "Making clients
  use TCP for large answers"); for these answers that would turn
  "not found" into a security error and make challenges unanswerable, and they cost an
  attacker nothing more than a record does. Everything else (protocol errors,
  unsupported operations, "too busy", server errors, refused authentication) goes
  unsigned: it carries nothing a forger could use that dropping packets does not
  already achieve, and it is what junk requests produce. Authenticated callers get
  every reply signed, as before.
- **Signatures are reused where the signed bytes repeat** (``protocol.msgsign.
  SignatureMemo``: below 2.7, by reply shape within a 60 s expiration window). From 2.7
  the request id is signed, so every reply is signed anew.
- **Signing is rationed per source network**: ``native_signed_replies_per_s`` per /24
  (IPv4) or /56 (IPv6), a token bucket; reused signatures take no token, networks in
  ``rate_limit_exempt_networks`` and authenticated callers are not rationed. Past it:
  RC 3 (too busy), unsigned.
- **Signing is off the event loop**, in a few threads (OpenSSL releases the GIL while it
  signs: measured, two threads sign 1.8x as fast as one with RSA-2048), at most
  ``native_sign_queue_max`` replies waiting or being signed at once; more get RC 3,
  unsigned. Spoofed sources can dodge a per-network ration, never this bound.

Session setups (opcode 400) are signed by ``NativeAuth.setup`` in the event loop; each
takes one signed reply from its network's ration too.

Every refusal is counted (``idnode_native_signed_replies_total{outcome}``) and logged
at most once a minute.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from node.runtime.metrics import NodeMetrics
from node.runtime.sources import RateLimiter, SourceKeys
from protocol.codes import OpFlag, ResponseCode
from protocol.message import Message
from protocol.msgsign import SignatureMemo, SiteKey, sign_data, signing_input, with_signature

log = logging.getLogger("idnode.native")

# Replies that answer the question: signed even for unauthenticated callers.
ANSWERS = frozenset(
    {
        ResponseCode.SUCCESS,
        ResponseCode.HANDLE_NOT_FOUND,
        ResponseCode.VALUES_NOT_FOUND,
        ResponseCode.SERVICE_REFERRAL,
        ResponseCode.PREFIX_REFERRAL,
        ResponseCode.AUTHENTICATION_NEEDED,
    }
)
LOG_EVERY_S = 60.0
OUTCOMES = ("signed", "reused", "unsigned", "rate_limited", "queue_full")


def default_workers() -> int:
    """A core left to the event loop; more than four threads buys nothing at the
    rates the queue bound lets through."""
    return max(1, min(4, (os.cpu_count() or 2) - 1))


def signs(rc: int, authenticated: bool) -> bool:
    """Whether a reply with this response code to a CERT request is signed."""
    return authenticated or rc in ANSWERS


class SigningRefused(Exception):
    """No signature now: answer RC 3 (too busy), unsigned. ``reason`` is the metric's
    outcome (rate_limited, queue_full)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason

    @property
    def message(self) -> str:
        return str(self.args[0])


class Certifier:
    """Signs replies with the site key, in a bounded thread pool, within each source
    network's ration; reuses signatures where it can (see the module docstring)."""

    def __init__(
        self,
        site_key: Callable[[], SiteKey],
        metrics: NodeMetrics,
        *,
        rate_per_s: float = 50,
        queue_max: int = 64,
        exempt: Iterable[str] = (),
        workers: int | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        memo: SignatureMemo | None = None,
    ):
        self.site_key = site_key
        self.queue_max = queue_max
        self.keys = SourceKeys(exempt)
        self.limiter = RateLimiter(rate_per_s)
        self.monotonic = monotonic
        self.memo = memo if memo is not None else SignatureMemo()
        self.workers = workers or default_workers()
        self._pool: ThreadPoolExecutor | None = None  # threads start at the first signature
        self.pending = 0  # submitted to the pool, not finished
        self._count = {o: metrics.signed_replies.labels(o).inc for o in OUTCOMES}
        metrics.sign_queue.set_function(lambda: self.pending)
        self._refused = {"rate_limited": 0, "queue_full": 0}
        self._next_log = 0.0

    def unsigned(self) -> None:
        """An error to an unauthenticated caller went out unsigned: count it."""
        self._count["unsigned"]()

    def ration(self, host: str | None) -> None:
        """Take one of ``host``'s signed replies for a reply signed elsewhere (session
        setup). Raises ``SigningRefused`` past the ration."""
        if not self.limiter.allow(self.keys.key(host), self.monotonic()):
            self._refuse("rate_limited", host)
            raise SigningRefused(
                "rate_limited", "too many signed replies for this network; retry later"
            )

    def exhausted(self, host: str | None) -> bool:
        """True when ``host``'s network has no signed reply left in its ration: a
        certified request from it will be refused, so it can be refused before any work
        (a CERT flood then costs no registry lookups). Counted as refused."""
        if not self.limiter.exhausted(self.keys.key(host), self.monotonic()):
            return False
        self._refuse("rate_limited", host)
        return True

    async def sign(self, message: Message, host: str | None, *, rationed: bool = True) -> Message:
        """``message`` with the CERT flag and an HS_SIGNED credential. ``rationed``:
        counted against ``host``'s source network. Raises ``SigningRefused``."""
        message = replace(
            message, header=replace(message.header, flags=message.header.flags | OpFlag.CERT)
        )
        reused = self.memo.find(message)
        if reused is not None:
            self._count["reused"]()
            return reused
        if self.pending >= self.queue_max:
            self._refuse("queue_full", host)
            raise SigningRefused(
                "queue_full", "the server is signing too many replies; retry later"
            )
        if rationed:
            self.ration(host)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="idnode-sign")
        # Only the RSA operation goes to the thread, which holds the GIL for little more
        # than the call: encoding here or there costs the loop the same, and a thread
        # running Python code competes with it for the GIL.
        data = signing_input(message)
        self.pending += 1
        future = asyncio.get_running_loop().run_in_executor(
            self._pool, sign_data, self.site_key(), data
        )
        future.add_done_callback(self._finished)  # even if the caller is cancelled
        signed = with_signature(message, await future)
        self.memo.keep(signed)
        self._count["signed"]()
        return signed

    def _finished(self, _: object) -> None:
        self.pending -= 1

    def _refuse(self, reason: str, host: str | None) -> None:
        self._count[reason]()
        self._refused[reason] += 1
        now = self.monotonic()
        if now < self._next_log:
            return
        self._next_log = now + LOG_EVERY_S
        log.warning(
            "native CERT replies answered RC 3 (too busy) instead of signed since the last "
            "such report (reports at most every %.0f s): %d over native_signed_replies_per_s "
            "(%s per source network), %d over native_sign_queue_max (%d); latest from %s",
            LOG_EVERY_S,
            self._refused["rate_limited"],
            self.limiter.rate_per_s,
            self._refused["queue_full"],
            self.queue_max,
            self.keys.key(host) or host,
        )
        self._refused = dict.fromkeys(self._refused, 0)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
