"""Request pacing and retry timing for a public API with no published rate limit.

ClinicalTrials.gov sends no rate-limit headers, so we budget ourselves (default 50 requests a
minute) and back off when it answers 429/5xx anyway. Clock and sleep are injected so tests
check the waits without waiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], float]
Sleep = Callable[[float], None]


class Pacer:
    """Keeps request starts at least 60/requests_per_minute seconds apart."""

    def __init__(self, requests_per_minute: float, clock: Clock = time.monotonic, sleep: Sleep = time.sleep):
        if requests_per_minute <= 0:
            raise ValueError("requests_per_minute must be positive")
        self.interval = 60.0 / requests_per_minute
        self.clock = clock
        self.sleep = sleep
        self._last: float | None = None

    def wait(self) -> float:
        """Sleep until the next request may start; returns the seconds slept."""
        now = self.clock()
        delay = 0.0 if self._last is None else max(0.0, self._last + self.interval - now)
        if delay > 0:
            self.sleep(delay)
        self._last = now + delay
        return delay
