"""Logging of dependency outages: a line when one goes down or comes back, counts in between.

A traceback per refused request or per retry turned a 40 s database outage into 62 MB of
logs; what an operator needs is when it started, how much it refused, and when it ended.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Final

REPORT_SECONDS: Final = 30.0


class DependencyLog:
    """The up/down state of one dependency (database, redis) as this process sees it."""

    def __init__(
        self,
        logger: logging.Logger,
        name: str,
        *,
        every: float = REPORT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.name = name
        self.every = every
        self._clock = clock
        self.is_down = False
        self.down_since = 0.0
        self.refused = 0  # failures seen since the outage began
        self._reported_at = 0.0
        self._reported_refused = 0

    def down(self, reason: str, *, refused: int = 1) -> None:
        """A failure: logged when it starts an outage, otherwise counted and summed periodically."""
        now = self._clock()
        self.refused += refused
        if not self.is_down:
            self.is_down = True
            self.down_since = self._reported_at = now
            self._reported_refused = self.refused
            self.logger.warning("%s down: %s", self.name, reason)
            return
        if now - self._reported_at >= self.every:
            self.logger.warning(
                "%s still down after %.0f s: %d refused in the last %.0f s (%s)",
                self.name,
                now - self.down_since,
                self.refused - self._reported_refused,
                now - self._reported_at,
                reason,
            )
            self._reported_at = now
            self._reported_refused = self.refused

    def up(self) -> None:
        """A success: logs the end of an outage once; free when nothing was down."""
        if not self.is_down:
            return
        self.is_down = False
        self.logger.warning(
            "%s back up after %.1f s; %d refused during the outage",
            self.name,
            self._clock() - self.down_since,
            self.refused,
        )
        self.refused = 0
