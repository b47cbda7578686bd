"""When and how long to retry a Truto call (tenacity underneath).

Retried: 429 (after ``Retry-After`` in seconds or as an HTTP date, else ``ratelimit-reset``, else
exponential backoff with full jitter), 500/502/504, connection errors, timeouts and dropped
connections. Never retried: 400/401/403/404/405/409/422 (the request itself is wrong) and 503,
which Truto uses for a blocked integrated account. Every wait is capped, and so is the total.
PATCH retries are safe because the hook sends one ``Idempotency-Key`` for all attempts.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx2
import tenacity

from truto_airflow.exceptions import TrutoAPIError

__all__ = ["RETRY_STATUSES", "RetryPolicy", "parse_retry_after"]

#: HTTP statuses worth another attempt.
RETRY_STATUSES = frozenset({429, 500, 502, 504})

#: Transport failures worth another attempt: nothing reached Truto, or the answer was lost.
RETRY_TRANSPORT_ERRORS: tuple[type[Exception], ...] = (
    httpx2.NetworkError,
    httpx2.TimeoutException,
    httpx2.RemoteProtocolError,
)


class RetryLogger(Protocol):
    """Anything with ``warning(msg, *args)``: a stdlib or structlog logger."""

    def warning(self, msg: Any, /, *args: Any) -> Any: ...


def parse_retry_after(
    headers: Mapping[str, str], *, now: dt.datetime | None = None
) -> float | None:
    """Seconds to wait, from ``Retry-After`` (seconds or HTTP date), else ``ratelimit-reset``."""
    lowered = {k.lower(): v for k, v in headers.items()}
    raw = lowered.get("retry-after")
    if raw is not None:
        raw = raw.strip()
        try:
            return max(0.0, float(raw))
        except ValueError:
            pass
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            when = None
        if when is not None:
            if when.tzinfo is None:
                when = when.replace(tzinfo=dt.timezone.utc)
            current = now or dt.datetime.now(dt.timezone.utc)
            return max(0.0, (when - current).total_seconds())
    reset = lowered.get("ratelimit-reset")
    if reset is not None:
        try:
            return max(0.0, float(reset.strip()))
        except ValueError:
            return None
    return None


class _StopOnTotalWait(tenacity.stop.stop_base):
    """Stop before the sum of planned waits exceeds the cap (independent of the clock)."""

    def __init__(self, max_total: float) -> None:
        self.max_total = max_total

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        return retry_state.idle_for + retry_state.upcoming_sleep > self.max_total


def describe_failure(exc: BaseException) -> str:
    """A short label for logs: the HTTP status or the transport error's class."""
    if isinstance(exc, TrutoAPIError):
        return f"HTTP {exc.status_code}"
    return type(exc).__name__


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries: ``max_retries`` extra attempts, each wait and the total capped.

    ``sleep``/``async_sleep`` are injectable so tests can record waits instead of sleeping.
    """

    max_retries: int = 5
    backoff_base: float = 0.5
    max_wait: float = 60.0
    max_total: float = 300.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)
    async_sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep, compare=False)

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if self.max_wait <= 0 or self.max_total <= 0 or self.backoff_base < 0:
            raise ValueError("retry waits must be positive")

    @staticmethod
    def is_retryable(exc: BaseException) -> bool:
        """Whether another attempt of the same request may succeed."""
        if isinstance(exc, TrutoAPIError):
            return exc.status_code in RETRY_STATUSES
        return isinstance(exc, RETRY_TRANSPORT_ERRORS)

    def wait_seconds(self, exc: BaseException | None, attempt: int) -> float:
        """How long to wait after failed attempt number ``attempt`` (1-based)."""
        if isinstance(exc, TrutoAPIError) and exc.status_code == 429:
            advised = parse_retry_after(exc.headers)
            if advised is not None:
                return min(advised, self.max_wait)
        # Full jitter: uniform in [0, base * 2^(attempt-1)], capped (spreads a herd of workers).
        ceiling = min(self.max_wait, self.backoff_base * 2 ** max(0, attempt - 1))
        return random.uniform(0.0, ceiling)

    def _wait(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        return self.wait_seconds(exc, state.attempt_number)

    def _stop(self) -> tenacity.stop.stop_base:
        # Stop when attempts run out, or when the next wait would push either the time spent
        # waiting or the wall-clock time since the first attempt past ``max_total``.
        return (
            tenacity.stop_after_attempt(self.max_retries + 1)
            | tenacity.stop_before_delay(self.max_total)
            | _StopOnTotalWait(self.max_total)
        )

    def _before_sleep(
        self, log: RetryLogger, what: str
    ) -> Callable[[tenacity.RetryCallState], None]:
        total = self.max_retries + 1

        def log_retry(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome is not None else None
            wait = state.next_action.sleep if state.next_action is not None else 0.0
            log.warning(
                "Truto %s failed with %s (attempt %d of %d); retrying in %.2fs",
                what,
                describe_failure(exc) if exc is not None else "an error",
                state.attempt_number,
                total,
                wait,
            )

        return log_retry

    def retrying(self, log: RetryLogger, what: str) -> tenacity.Retrying:
        """A tenacity controller for one logical call (``what`` names it in logs)."""
        return tenacity.Retrying(
            stop=self._stop(),
            wait=self._wait,
            retry=tenacity.retry_if_exception(self.is_retryable),
            before_sleep=self._before_sleep(log, what),
            sleep=self.sleep,
            reraise=True,
        )

    def async_retrying(self, log: RetryLogger, what: str) -> tenacity.AsyncRetrying:
        """The asyncio twin of :meth:`retrying`, with the same policy."""
        return tenacity.AsyncRetrying(
            stop=self._stop(),
            wait=self._wait,
            retry=tenacity.retry_if_exception(self.is_retryable),
            before_sleep=self._before_sleep(log, what),
            sleep=self.async_sleep,
            reraise=True,
        )
