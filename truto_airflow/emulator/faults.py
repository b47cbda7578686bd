"""Deterministic misbehaviour: rate limits, injected 5xx, dropped connections, latency.

Each knob draws from its own ``random.Random`` seeded from the emulator seed and the knob's name,
and draws exactly once per ``/unified/*`` request whether or not it fires. So the n-th request
gets the same fate for a given seed regardless of the other knobs' settings, which makes a
failing retry test reproducible. Admin routes and ``/integrated-account`` never see faults.
"""

from __future__ import annotations

import math
import random
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from truto_airflow.emulator.config import RATE_LIMIT_WINDOW_S, EmulatorConfig
from truto_airflow.emulator.errors import ApiError
from truto_airflow.emulator.vendor import raw_error

__all__ = ["Fate", "FaultInjector", "RateLimiter", "RateVerdict", "injected_error", "rate_limited"]


@dataclass(frozen=True)
class RateVerdict:
    """Outcome of one rate-limit check plus the ``ratelimit-*`` headers to send."""

    allowed: bool
    limit: int
    remaining: int
    reset_s: int

    def headers(self) -> dict[str, str]:
        headers = {
            "ratelimit-limit": f"{self.limit};w={RATE_LIMIT_WINDOW_S}",
            "ratelimit-remaining": str(self.remaining),
            "ratelimit-reset": str(self.reset_s),
        }
        if not self.allowed:
            headers["retry-after"] = str(self.reset_s)
        return headers


def rate_limited(integration: str, verdict: RateVerdict) -> ApiError:
    """The 429 a CRM behind Truto answers once the account's window is used up."""
    message = "Rate limit exceeded. Retry after the window resets."
    return ApiError(
        429,
        message,
        remote=True,
        raw_response=raw_error(integration, 429, message),
        insight={
            "rate_limit_error": {
                "description": "The remote API rate limit was hit.",
                "value": {"retry_after": verdict.reset_s},
            }
        },
    )


class RateLimiter:
    """Fixed 10-second windows per ``integrated_account_id``; a window opens on first use."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._windows: dict[str, tuple[float, int]] = {}

    def reset(self) -> None:
        self._windows.clear()

    def check(self, key: str, limit: int) -> RateVerdict:
        now = self._clock()
        start, used = self._windows.get(key, (now, 0))
        if now - start >= RATE_LIMIT_WINDOW_S:
            start, used = now, 0
        reset_s = max(1, math.ceil(start + RATE_LIMIT_WINDOW_S - now))
        if used >= limit:
            self._windows[key] = (start, used)
            return RateVerdict(False, limit, 0, reset_s)
        used += 1
        self._windows[key] = (start, used)
        return RateVerdict(True, limit, limit - used, reset_s)


@dataclass(frozen=True)
class Fate:
    """What the fault knobs decided for one request."""

    delay_s: float = 0.0
    fault_status: int | None = None
    drop: str | None = None  # "before" or "after" (the write being applied)


def injected_error(status: int) -> ApiError:
    """An injected 5xx (a 502 looks like a gateway's HTML page wrapped by Truto)."""
    if status == 502:
        return ApiError(
            502,
            "The remote API returned an invalid response.",
            remote=True,
            raw_response="<html><body><h1>502 Bad Gateway</h1></body></html>",
        )
    return ApiError(status, "Injected fault: the request could not be completed.")


def _rng(seed: int, knob: str) -> random.Random:
    return random.Random(seed * 1_000_003 + zlib.crc32(knob.encode()))


class FaultInjector:
    """Draws each request's :class:`Fate` from per-knob random streams."""

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self.reset()

    def reset(self) -> None:
        self._latency = _rng(self._seed, "latency")
        self._slow = _rng(self._seed, "slow")
        self._fault = _rng(self._seed, "fault")
        self._fault_status = _rng(self._seed, "fault_status")
        self._drop = _rng(self._seed, "drop")
        self._drops = 0

    def draw(self, config: EmulatorConfig) -> Fate:
        jitter = self._latency.random()
        slow = self._slow.random()
        fault = self._fault.random()
        status_pick = self._fault_status.random()
        drop = self._drop.random()
        delay_ms = config.latency_ms + jitter * config.latency_jitter_ms
        if slow < config.slow_rate:
            delay_ms += config.slow_ms
        fault_status = None
        if fault < config.fault_rate:
            statuses = config.fault_statuses
            fault_status = statuses[min(int(status_pick * len(statuses)), len(statuses) - 1)]
        drop_phase = None
        if fault_status is None and drop < config.drop_rate:
            drop_phase = "before" if self._drops % 2 == 0 else "after"
            self._drops += 1
        return Fate(delay_s=delay_ms / 1000.0, fault_status=fault_status, drop=drop_phase)
