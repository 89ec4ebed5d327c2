"""Run progress: a tqdm bar (done / total, rate, ETA) on a terminal, plain periodic lines in
cron logs, where a redrawn bar would only be noise."""

from __future__ import annotations

import sys
import time
from typing import IO, Any


class Progress:
    """Counts patients done; `total` may become known only after the source was read."""

    def __init__(self, total: int | None = None, stream: IO[str] | None = None, interval_s: float = 10.0,
                 tty: bool | None = None):
        self.stream = stream or sys.stderr
        self.total = total
        self.done = 0
        self.interval_s = interval_s
        self.started = time.monotonic()
        self._last_line = self.started
        is_tty = self.stream.isatty() if tty is None else tty
        self._bar: Any = None
        if is_tty:
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="patient", file=self.stream, dynamic_ncols=True)

    def set_total(self, total: int) -> None:
        self.total = total
        if self._bar is not None:
            self._bar.total = total
            self._bar.refresh()

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        if now - self._last_line >= self.interval_s:
            self._last_line = now
            self.stream.write(self.line(now) + "\n")
            self.stream.flush()

    def line(self, now: float | None = None) -> str:
        elapsed = max((now or time.monotonic()) - self.started, 1e-9)
        rate = self.done / elapsed
        text = f"progress: {self.done}" + (f"/{self.total}" if self.total else "") + f" patients, {rate:.1f}/s"
        if self.total and rate > 0 and self.done < self.total:
            text += f", ETA {(self.total - self.done) / rate:.0f} s"
        return text

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
