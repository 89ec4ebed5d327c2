"""Whether a server's Observation searches carry `code=`/`date=ge`, chosen by measuring.

Narrowed searches move fewer bytes, but some servers answer them far slower than a plain
`patient=` search (bench/README.md: 108 ms vs 3.6 ms on sekmet), which made our pull slower
than a naive client on loopback. With `narrow_observations = "auto"` (the default) the first
patients of a run are fetched alternately narrowed and plain, each timed; after SAMPLES of
each, the faster way (by median) is kept for the rest of the run. `true` / `false` pin it.
"""

from __future__ import annotations

import statistics
import threading

SAMPLES = 3
AUTO = "auto"


class NarrowingChoice:
    """Thread-safe: several patients are fetched at once."""

    def __init__(self, setting: bool | str = AUTO, samples: int = SAMPLES):
        self.pinned = setting if isinstance(setting, bool) else None
        self.samples = samples
        self.times: dict[bool, list[float]] = {True: [], False: []}
        self._handed: dict[bool, int] = {True: 0, False: 0}
        self._lock = threading.Lock()

    @property
    def chosen(self) -> bool | None:
        """The way in use for good (None while still measuring)."""
        if self.pinned is not None:
            return self.pinned
        if min(len(t) for t in self.times.values()) < self.samples:
            return None
        return statistics.median(self.times[True]) <= statistics.median(self.times[False])

    def next(self) -> bool:
        """Whether to narrow the next patient's Observation search."""
        chosen = self.chosen
        if chosen is not None:
            return chosen
        with self._lock:
            narrowed = self._handed[True] <= self._handed[False]
            self._handed[narrowed] += 1
            return narrowed

    def record(self, narrowed: bool, seconds: float) -> None:
        if self.pinned is None:
            with self._lock:
                self.times[narrowed].append(seconds)

    def describe(self) -> str:
        if self.pinned is not None:
            return f"{'narrowed' if self.pinned else 'plain'} (pinned by narrow_observations = {str(self.pinned).lower()})"
        chosen = self.chosen
        if chosen is None:
            return "auto: not measured yet (the first patients of a run decide)"
        narrowed, plain = (statistics.median(self.times[k]) * 1000 for k in (True, False))
        return (f"{'narrowed' if chosen else 'plain'} (auto: median {narrowed:.0f} ms narrowed vs {plain:.0f} ms "
                f"plain per patient over {self.samples} patients each)")
