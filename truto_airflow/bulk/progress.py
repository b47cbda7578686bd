"""A progress line every N rows or S seconds: rows done, rate and ETA."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

__all__ = ["ProgressReporter"]


class _Log(Protocol):
    def info(self, msg: Any, /, *args: Any) -> Any: ...


class ProgressReporter:
    """Decides when to log and formats the line (clock injectable for tests)."""

    def __init__(
        self,
        log: _Log,
        *,
        every_rows: int | None = 1000,
        every_seconds: float | None = 30.0,
        total: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        label: str = "Bulk progress",
    ) -> None:
        self.log = log
        self.label = label
        self.every_rows = every_rows if every_rows and every_rows > 0 else None
        self.every_seconds = every_seconds if every_seconds and every_seconds > 0 else None
        self.total = total
        self._clock = clock
        self._start = clock()
        self._last_time = self._start
        self._last_rows = 0
        self.lines = 0

    def due(self, done: int) -> bool:
        if self.every_rows is not None and done - self._last_rows >= self.every_rows:
            return True
        return (
            self.every_seconds is not None
            and self._clock() - self._last_time >= self.every_seconds
            and done != self._last_rows
        )

    def maybe_report(
        self, done: int, counts: Mapping[str, int], extra: str = "", *, force: bool = False
    ) -> str | None:
        """Log (and return) a progress line when one is due."""
        if not force and not self.due(done):
            return None
        now = self._clock()
        elapsed = max(now - self._start, 1e-9)
        rate = done / elapsed
        if self.total:
            pct = f" ({100.0 * done / self.total:.1f}%)"
            remaining = max(self.total - done, 0)
            eta = f"ETA {remaining / rate:.1f} s" if rate > 0 else "ETA unknown"
            where = f"{done:,}/{self.total:,} rows{pct}"
        else:
            where, eta = f"{done:,} rows (total unknown)", "ETA unknown"
        outcome = ", ".join(f"{k}={v:,}" for k, v in counts.items())
        line = f"{self.label}: {where} done, {rate:,.1f} rows/s, {eta}; {outcome}{extra}"
        self.log.info("%s", line)
        self._last_time = now
        self._last_rows = done
        self.lines += 1
        return line
