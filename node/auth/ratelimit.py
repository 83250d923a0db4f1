"""Failed-authentication limiter per client address (a sliding window).

The clock comes in as ``now`` (monotonic seconds), so tests step time without
sleeping. Memory is bounded: at most ``max_tracked`` addresses are remembered; when
full, the longest-tracked address is forgotten first (expired ones go lazily).
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

    def _evict(self) -> None:
        while len(self._failures) >= self.max_tracked:
            # dicts keep insertion order: the first key is the longest-tracked one.
            del self._failures[next(iter(self._failures))]

    def tracked(self) -> int:
        return len(self._failures)
