"""When and how long to retry a Truto call (tenacity underneath).

Which statuses are retried is written once, in ``exceptions.STATUS_POLICY`` (today 429 and
500/502/504); connection errors, timeouts and dropped connections are retried too. A 429 waits
for ``Retry-After`` in seconds or as an HTTP date, else ``ratelimit-reset``, else exponential
backoff (a garbage hint counts as none). Every wait is capped, and so is the total.
PATCH retries are safe because the hook sends one ``Idempotency-Key`` for all attempts.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx2
import tenacity

from truto_airflow.exceptions import STATUS_POLICY, TrutoAPIError, TrutoConfigError

__all__ = [
    "MAX_HINT_SECONDS",
    "RETRY_STATUSES",
    "RetryPolicy",
    "parse_delay_seconds",
    "parse_retry_after",
]

#: HTTP statuses worth another attempt (read from ``exceptions.STATUS_POLICY``).
RETRY_STATUSES = frozenset(code for code, rule in STATUS_POLICY.items() if rule.hook_retries)

#: Transport failures worth another attempt: nothing reached Truto, or the answer was lost.
RETRY_TRANSPORT_ERRORS: tuple[type[Exception], ...] = (
    httpx2.NetworkError,
    httpx2.TimeoutException,
    httpx2.RemoteProtocolError,
)


class RetryLogger(Protocol):
    """Anything with ``warning(msg, *args)``: a stdlib or structlog logger."""

    def warning(self, msg: Any, /, *args: Any) -> Any: ...


#: A server hint longer than this (a day) is garbage, not advice: it is ignored for backoff.
MAX_HINT_SECONDS = 86_400.0

#: ``delay-seconds``: digits with an optional fraction. Stricter than ``float()``, which also
#: takes ``nan``, ``inf``, ``-1``, ``1e400`` and ``1_000``.
_DELAY_SECONDS = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,9})?")


def parse_delay_seconds(raw: str | None) -> float | None:
    """A header's seconds (``Retry-After``, ``ratelimit-reset``); ``None`` if absent or garbage.

    Garbage is anything but a plain non-negative number up to :data:`MAX_HINT_SECONDS`.
    """
    if raw is None:
        return None
    text = raw.strip()
    if not _DELAY_SECONDS.fullmatch(text):
        return None
    value = float(text)
    return value if value <= MAX_HINT_SECONDS else None


def _parse_http_date(raw: str, now: dt.datetime | None) -> float | None:
    """Seconds until an RFC 9110 HTTP date (0 once passed); ``None`` for anything else."""
    try:
        when = email.utils.parsedate_to_datetime(raw.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # no zone, or "-0000": not an HTTP date (those are GMT)
        return None
    current = now or dt.datetime.now(dt.timezone.utc)
    seconds = (when - current).total_seconds()
    return max(0.0, seconds) if seconds <= MAX_HINT_SECONDS else None


def parse_retry_after(
    headers: Mapping[str, str], *, now: dt.datetime | None = None
) -> float | None:
    """Seconds the server asks us to wait: the one reader of server wait hints.

    ``Retry-After`` (seconds or an HTTP date), else ``ratelimit-reset``. ``None`` when there is
    no usable hint: absent, or garbage (negative, NaN, infinite, longer than a day, not a
    number, a malformed date), so the caller backs off instead of retrying at once or sleeping
    for ever. Callers cap the result with their own ``max_wait``.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    raw = lowered.get("retry-after")
    if raw is not None:
        seconds = parse_delay_seconds(raw)
        if seconds is None:
            seconds = _parse_http_date(raw, now)
        if seconds is not None:
            return seconds
    return parse_delay_seconds(lowered.get("ratelimit-reset"))


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
            raise TrutoConfigError("max_retries must be >= 0")
        if self.max_wait <= 0 or self.max_total <= 0 or self.backoff_base < 0:
            raise TrutoConfigError("retry waits must be positive")

    @staticmethod
    def is_retryable(exc: BaseException) -> bool:
        """Whether another attempt of the same request may succeed."""
        if isinstance(exc, TrutoAPIError):
            return exc.policy.hook_retries
        return isinstance(exc, RETRY_TRANSPORT_ERRORS)

    def wait_seconds(self, exc: BaseException | None, attempt: int) -> float:
        """How long to wait after failed attempt number ``attempt`` (1-based)."""
        ceiling = min(self.max_wait, self.backoff_base * 2 ** max(0, attempt - 1))
        if isinstance(exc, TrutoAPIError) and exc.status_code == 429:
            advised = parse_retry_after(exc.headers)
            if advised is not None:
                return min(advised, self.max_wait)
            # Told to slow down without a usable hint: at least half the backoff, never "now".
            return random.uniform(ceiling / 2, ceiling)
        # Full jitter: uniform in [0, base * 2^(attempt-1)], capped (spreads a herd of workers).
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

    def _controller_args(self, log: RetryLogger, what: str) -> dict[str, Any]:
        """Everything but the sleep function: the sync and async controllers share the policy."""
        return {
            "stop": self._stop(),
            "wait": self._wait,
            "retry": tenacity.retry_if_exception(self.is_retryable),
            "before_sleep": self._before_sleep(log, what),
            "reraise": True,
        }

    def retrying(self, log: RetryLogger, what: str) -> tenacity.Retrying:
        """A tenacity controller for one logical call (``what`` names it in logs)."""
        return tenacity.Retrying(sleep=self.sleep, **self._controller_args(log, what))

    def async_retrying(self, log: RetryLogger, what: str) -> tenacity.AsyncRetrying:
        """The asyncio twin of :meth:`retrying`, with the same policy."""
        return tenacity.AsyncRetrying(sleep=self.async_sleep, **self._controller_args(log, what))
