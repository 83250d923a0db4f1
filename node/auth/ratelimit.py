"""Failed authentications per key (a client network, or an identity) in a sliding window.

A check that costs (a PBKDF2, a signature verification) is *reserved* before it runs:
it counts as a failure up front and is given back when it succeeds. So however many
guesses arrive at once, at most ``max_failures`` of them are checked per window; the
rest wait for a reservation to be settled, or are refused once the failures fill the
window (``node.auth.checks``). Cheap failures (a malformed header, an unknown session)
are recorded after the fact.

The clock comes in as ``now`` (monotonic seconds), so tests step time without sleeping.
Memory is bounded: at most ``max_tracked`` keys are remembered; when full, the
longest-tracked key is forgotten first (expired ones go lazily). Pending reservations
are bounded by the checks in flight.
"""

from __future__ import annotations

import math
from collections import deque


class FailureLimiter:
    def __init__(self, max_failures: int, window_s: float, *, max_tracked: int = 100_000):
        self.max_failures = max_failures
        self.window_s = window_s
        self.max_tracked = max_tracked
        self._failures: dict[str, deque[float]] = {}
        self._pending: dict[str, int] = {}  # reservations whose check has not ended

    def _recent(self, key: str, now: float) -> deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times

    def retry_after(self, key: str, now: float) -> int | None:
        """Seconds until ``key`` may try again, or None when it is not blocked."""
        times = self._recent(key, now)
        if times is None or len(times) < self.max_failures:
            return None
        # Blocked until the oldest failure inside the window leaves it.
        return max(1, math.ceil(times[0] + self.window_s - now))

    def record_failure(self, key: str, now: float) -> None:
        times = self._recent(key, now)
        if times is None:
            if len(self._failures) >= self.max_tracked:
                self._evict()
            times = self._failures[key] = deque()
        times.append(now)
        while len(times) > self.max_failures:  # only the newest N matter
            times.popleft()

    def has_room(self, key: str, now: float) -> bool:
        """May one more check for ``key`` start: its failures in the window and its
        checks in flight together stay under the limit?"""
        times = self._recent(key, now)
        return (len(times) if times else 0) + self._pending.get(key, 0) < self.max_failures

    def reserve(self, key: str) -> None:
        """Count a check about to run as a failure until ``settle`` says otherwise (the
        caller asked ``has_room`` first)."""
        self._pending[key] = self._pending.get(key, 0) + 1

    def settle(self, key: str, now: float, *, failed: bool) -> None:
        """End a reservation: a failure stays counted (at ``now``), a success or a check
        that never ran is given back."""
        left = self._pending.get(key, 0) - 1
        if left > 0:
            self._pending[key] = left
        else:
            self._pending.pop(key, None)
        if failed:
            self.record_failure(key, now)

    def pending(self, key: str) -> int:
        return self._pending.get(key, 0)

    def _evict(self) -> None:
        while len(self._failures) >= self.max_tracked:
            # dicts keep insertion order: the first key is the longest-tracked one.
            del self._failures[next(iter(self._failures))]

    def tracked(self) -> int:
        return len(self._failures)
