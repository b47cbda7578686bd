"""Per-account pacing: proactive from ``ratelimit-*`` headers, reactive on 429.

Every method takes ``now`` (a monotonic time in seconds) instead of reading a clock, so tests can
drive the pacer with a fake clock and no sleeps. One :class:`AccountPacer` exists per integrated
account; accounts never share state, so one throttled account cannot slow another.

The model (Truto forwards ``ratelimit-limit: N;w=S``, ``ratelimit-remaining``, ``ratelimit-reset``
seconds until the window resets, and ``Retry-After`` on a 429):

* Until the first answer, one request at a time (a *probe*): the budget is unknown.
* ``avail`` = requests we may still send in the current window: the server's ``remaining`` minus
  what we have in flight (which the server may not have counted yet), decremented per send.
* ``window_end`` = the earliest upper bound seen for the window's reset (``now + reset`` is an
  upper bound because the server rounds up); when the budget is spent we wait until then.
* A 429 blocks the account until ``Retry-After`` (else ``ratelimit-reset``, else backoff), then one
  probe goes out before the account opens up again (half-open circuit).
* An answer without rate-limit headers means "no published limit": no proactive pacing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from truto_airflow.retry import parse_delay_seconds, parse_retry_after

__all__ = ["AccountPacer", "RateLimitInfo"]

#: Responses whose implied reset differs from the current estimate by more than this belong to
#: another window (Truto's ``ratelimit-reset`` is in whole seconds).
_WINDOW_SLACK_S = 1.5


@dataclass(frozen=True)
class RateLimitInfo:
    """The normalised ``ratelimit-*`` headers of one response.

    Of ``ratelimit-limit: N;w=S`` only ``N`` is kept: where the current window ends is what
    ``ratelimit-reset`` says, so the window's length (``w``) decides nothing here.
    """

    limit: int | None
    remaining: int | None
    reset_s: float | None

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> RateLimitInfo | None:
        limit_text = headers.get("ratelimit-limit")
        remaining_text = headers.get("ratelimit-remaining")
        reset_text = headers.get("ratelimit-reset")
        if limit_text is None and remaining_text is None and reset_text is None:
            return None  # no published limit (each answer of such an account asks)
        limit = _int((limit_text or "").partition(";")[0])
        remaining = _int(remaining_text)
        reset = parse_delay_seconds(reset_text)
        if remaining is None and reset is None and limit is None:
            return None
        return cls(limit=limit, remaining=remaining, reset_s=reset)


def _int(text: str | None) -> int | None:
    """A count header (``ratelimit-remaining``, ``ratelimit-limit``): a plain whole number."""
    if text is None:
        return None
    text = text.strip()
    return int(text) if text.isdigit() and text.isascii() and len(text) <= 12 else None


class AccountPacer:
    """Decides when the next request of one integrated account may go out.

    :param max_in_flight: optional cap on concurrent requests for this account.
    :param backoff_base: first wait after a 429 without any hint; doubles per consecutive 429.
    :param max_wait: cap on any single wait.
    """

    def __init__(
        self,
        *,
        max_in_flight: int | None = None,
        backoff_base: float = 1.0,
        max_wait: float = 60.0,
    ) -> None:
        self.max_in_flight = max_in_flight
        self.backoff_base = backoff_base
        self.max_wait = max_wait
        self.in_flight = 0
        self.probing = True
        self.limit: int | None = None
        #: Sends left in the current window; ``None`` = no published limit.
        self.avail: int | None = None
        self.window_end: float | None = None
        self._prev_window_end: float | None = None
        self.blocked_until = 0.0
        self.throttled_since: float | None = None
        self.consecutive_429 = 0

    # -- decisions ------------------------------------------------------------------------

    def delay(self, now: float) -> float:
        """Seconds until a send is allowed: 0 = now, ``inf`` = when an in-flight answer returns."""
        if now < self.blocked_until:
            return self.blocked_until - now
        if self.probing:
            return 0.0 if self.in_flight == 0 else math.inf
        if self.max_in_flight is not None and self.in_flight >= self.max_in_flight:
            return math.inf
        if self.avail is None or self.avail > 0:
            return 0.0
        if self.window_end is None:
            return math.inf if self.in_flight else 0.0
        if now >= self.window_end:
            # The window is over: the budget refills (minus what is still in flight).
            return 0.0 if (self.limit or 1) - self.in_flight > 0 else math.inf
        return self.window_end - now

    def acquire(self, now: float) -> bool:
        """Take a send slot if one is free now; ``False`` (and no change) otherwise."""
        if self.delay(now) > 0:
            return False
        if (
            not self.probing
            and self.avail is not None
            and self.avail <= 0
            and (self.window_end is None or now >= self.window_end)
        ):
            self._roll(now)
        if self.avail is not None:
            self.avail -= 1
        self.in_flight += 1
        return True

    def _roll(self, now: float) -> None:
        self._prev_window_end = self.window_end
        self.window_end = None  # unknown until an answer from the new window arrives
        self.avail = (self.limit or 1) - self.in_flight

    # -- feedback -------------------------------------------------------------------------

    def release(self) -> None:
        """An in-flight request ended without an HTTP answer (network error)."""
        self.in_flight = max(0, self.in_flight - 1)

    def on_response(self, now: float, status: int, headers: Mapping[str, str]) -> None:
        """Learn from one HTTP answer of this account (``headers`` with lower-case names)."""
        self.in_flight = max(0, self.in_flight - 1)
        info = RateLimitInfo.from_headers(headers)
        if status == 429:
            self._on_429(now, headers, info)
            return
        self.probing = False
        self.consecutive_429 = 0
        self.throttled_since = None
        if info is None or info.remaining is None:
            if self.limit is None:
                self.avail = None  # no published limit: only react to 429s
            return
        if info.limit is not None:
            self.limit = info.limit
        # The reset is a wait like Retry-After, so it is capped the same way: a server saying
        # "3600" makes us probe again after ``max_wait``, not sleep for an hour.
        implied = now + min(info.reset_s, self.max_wait) if info.reset_s is not None else None
        estimate = info.remaining - self.in_flight
        if implied is None:
            self.avail = estimate if self.avail is None else min(self.avail, estimate)
            return
        if self.window_end is None:
            prev = self._prev_window_end
            if prev is not None and implied <= prev + _WINDOW_SLACK_S:
                return  # an answer from the window we already left
            self.window_end = implied
            self.avail = estimate if self.avail is None else min(self.avail, estimate)
        elif implied > self.window_end + _WINDOW_SLACK_S:
            # The server started a new window without us rolling (we never ran dry).
            self._prev_window_end = self.window_end
            self.window_end = implied
            self.avail = estimate
        elif implied < self.window_end - _WINDOW_SLACK_S:
            return  # stale: from an older window
        else:
            self.window_end = min(self.window_end, implied)
            self.avail = estimate if self.avail is None else min(self.avail, estimate)

    def _on_429(self, now: float, headers: Mapping[str, str], info: RateLimitInfo | None) -> None:
        self.consecutive_429 += 1
        if self.throttled_since is None:
            self.throttled_since = now
        wait = parse_retry_after(headers)
        if wait is None:
            wait = self.backoff_base * 2 ** min(self.consecutive_429 - 1, 10)
        wait = min(wait, self.max_wait)
        self.blocked_until = max(self.blocked_until, now + wait)
        if info is not None and info.limit is not None:
            self.limit = info.limit
        # After the block, one probe first (half-open), then the budget the answer reports.
        self.probing = True
        self.avail = None
        self._prev_window_end = None
        self.window_end = None

    def throttled_for(self, now: float) -> float:
        """How long the account has answered only 429s (0 when it is not throttled)."""
        return 0.0 if self.throttled_since is None else now - self.throttled_since
