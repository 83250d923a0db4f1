"""Zipf-distributed identifier popularity: rank r of N drawn with probability
proportional to r^-s (s ~ 1.1 fits web and resolver request logs; a few hot
identifiers, a very long tail).

``ZipfKeys`` samples in Python (the locustfile's cold/hot mix); udpload.c samples the
same law in C for the UDP benchmark, scattering ranks over the key space the same way
(rank -> rank * SCATTER mod N). ``expected_hit_ratio`` says what a cache that never
evicts would hit over a window of the stream, so the node's measured hit ratio has a
figure to be read against rather than standing alone.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_left
from itertools import accumulate

SCATTER = 2654435761  # as udpload.c: a prime larger than any key space


def weights(n: int, s: float) -> list[float]:
    """Probabilities of ranks 1..n."""
    raw = [r**-s for r in range(1, n + 1)]
    total = sum(raw)
    return [w / total for w in raw]


def key_of_rank(rank: int, n: int) -> int:
    """The key (0..n-1) that rank ``rank`` (0-based) stands for: hot keys are scattered
    over the table, not neighbours."""
    return rank * SCATTER % n


class ZipfKeys:
    """Keys 0..n-1 drawn by Zipf popularity."""

    def __init__(self, n: int, s: float = 1.1, rng: random.Random | None = None):
        self.n = n
        self.s = s
        self.rng = rng or random.Random()
        self._cumulative = list(accumulate(weights(n, s)))

    def rank(self) -> int:
        return min(bisect_left(self._cumulative, self.rng.random()), self.n - 1)

    def key(self) -> int:
        return key_of_rank(self.rank(), self.n)


def expected_distinct(probabilities: list[float], requests: float) -> float:
    """Expected distinct keys among ``requests`` independent draws."""
    if requests <= 0:
        return 0.0
    return math.fsum(1.0 - math.pow(1.0 - p, requests) for p in probabilities)


def expected_hit_ratio(n: int, s: float, before: float, during: float) -> float:
    """Share of the ``during`` requests that follow ``before`` ones which a cache
    holding everything it ever saw answers: a request misses only on a key's first draw."""
    if during <= 0:
        return 0.0
    p = weights(n, s)
    first_draws = expected_distinct(p, before + during) - expected_distinct(p, before)
    return 1.0 - first_draws / during
