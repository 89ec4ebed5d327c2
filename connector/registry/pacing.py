"""Request pacing and retry timing for a public API with no published rate limit.

ClinicalTrials.gov sends no rate-limit headers, so we budget ourselves (default 50 requests a
minute) and back off when it answers 429/5xx anyway. Clock and sleep are injected so tests
check the waits without waiting.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

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


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """`Retry-After` as seconds: either delta-seconds or an HTTP-date; None when absent/unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    now = now or datetime.now(timezone.utc)
    return max(0.0, (when - now).total_seconds())


def backoff_seconds(attempt: int, base: float = 2.0, cap: float = 60.0, rng: random.Random | None = None) -> float:
    """Exponential backoff with jitter: about base * 2**attempt, between half and all of it."""
    full = min(cap, base * (2 ** attempt))
    return full * (0.5 + 0.5 * (rng or random).random())
