"""A progress line every N rows or S seconds: rows done, rate and ETA; log writes that never raise.

Why guarded: Airflow's task runner logs through structlog to a pipe owned by its supervisor
process. When that process dies, every log write raises ``BrokenPipeError``; a progress line that
raises from inside a worker used to kill the worker (and, with it, the run's liveness). A log line
is never worth a row, so write failures are counted (the summary reports them) and swallowed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

__all__ = ["GuardedLog", "ProgressReporter"]


class _Log(Protocol):
    def info(self, msg: Any, /, *args: Any) -> Any: ...


class GuardedLog:
    """A logger front whose write failures are counted, never raised (see the module docstring)."""

    def __init__(self, log: Any) -> None:
        self.inner = log
        #: Log calls that raised (and were dropped).
        self.failures = 0
        self.last_error: str | None = None

    @classmethod
    def wrap(cls, log: Any) -> GuardedLog:
        return log if isinstance(log, GuardedLog) else cls(log)

    def _emit(self, level: str, msg: Any, args: tuple[Any, ...]) -> None:
        try:
            getattr(self.inner, level)(msg, *args)
        except Exception as exc:  # a broken log pipe, a bad handler: drop the line, keep going
            self.failures += 1
            self.last_error = f"{type(exc).__name__}: {exc}"

    def debug(self, msg: Any, /, *args: Any) -> None:
        self._emit("debug", msg, args)

    def info(self, msg: Any, /, *args: Any) -> None:
        self._emit("info", msg, args)

    def warning(self, msg: Any, /, *args: Any) -> None:
        self._emit("warning", msg, args)

    def error(self, msg: Any, /, *args: Any) -> None:
        self._emit("error", msg, args)


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
        self.log = GuardedLog.wrap(log)
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
