"""One log line per interval for an event an attacker can repeat thousands of times a
second (a refused connection, a malformed request, a full descriptor table): the
operator learns that it happens, and how often, without the log becoming the attack.
Metrics count every occurrence; the log only summarises.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

DEFAULT_INTERVAL_S = 10.0


class LogEvery:
    """Logs the first occurrence at once, then at most one line per ``interval_s``,
    saying how many were left out since the line before."""

    def __init__(
        self,
        logger: logging.Logger,
        level: int = logging.WARNING,
        interval_s: float = DEFAULT_INTERVAL_S,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self.logger = logger
        self.level = level
        self.interval_s = interval_s
        self.monotonic = monotonic
        self._next = float("-inf")
        self._left_out = 0

    def __call__(self, msg: str, *args: object) -> None:
        now = self.monotonic()
        if now < self._next:
            self._left_out += 1
            return
        self._next = now + self.interval_s
        if self._left_out:
            msg += " (and %d more like it since the last such line)"
            args = (*args, self._left_out)
            self._left_out = 0
        self.logger.log(self.level, msg, *args)
