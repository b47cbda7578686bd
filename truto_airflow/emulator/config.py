"""Emulator configuration: seed data size, auth token and the fault/latency knobs.

Everything that can change at runtime (``EmulatorHandle.configure``) is a *knob*; the seed, the
data size and the token are fixed for the server's lifetime. Keeping the config a plain dataclass
that round-trips through JSON lets thread mode and subprocess mode share one code path.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["DEFAULT_TOKEN", "KNOBS", "RATE_LIMIT_WINDOW_S", "EmulatorConfig"]

DEFAULT_TOKEN = "truto-emulator-token"  # noqa: S105 - a local test double's fixed token
#: Truto's rate-limit headers describe 10-second windows (``ratelimit-limit: 110;w=10``).
RATE_LIMIT_WINDOW_S = 10

#: Runtime-changeable settings (see ``EmulatorHandle.configure``).
KNOBS = (
    "latency_ms",
    "latency_jitter_ms",
    "fault_rate",
    "fault_statuses",
    "drop_rate",
    "rate_limit",
    "slow_rate",
    "slow_ms",
)


@dataclass(frozen=True)
class EmulatorConfig:
    """How to seed and misbehave.

    :param seed: drives the seed data *and* every fault decision (one ``random.Random`` per knob),
        so a run is reproducible.
    :param opportunities: total seeded opportunities, spread across the seeded accounts.
    :param token: the bearer token the emulator accepts (on API and admin routes alike).
    :param latency_ms: fixed delay added to every ``/unified/*`` response.
    :param latency_jitter_ms: extra uniformly random delay in ``[0, jitter)``.
    :param fault_rate: probability of answering a ``/unified/*`` request with a 5xx.
    :param fault_statuses: the 5xx statuses injected, picked uniformly.
    :param drop_rate: probability of aborting the response mid-body; alternately before and after
        the write is applied.
    :param rate_limit: requests per 10-second window per ``integrated_account_id``; ``None`` = off.
    :param slow_rate: probability of an extra ``slow_ms`` delay (to exceed a client timeout).
    """

    seed: int = 0
    opportunities: int = 300
    token: str = DEFAULT_TOKEN
    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    fault_rate: float = 0.0
    fault_statuses: tuple[int, ...] = (500, 502, 504)
    drop_rate: float = 0.0
    rate_limit: int | None = None
    slow_rate: float = 0.0
    slow_ms: float = 0.0
    request_log_limit: int = 100_000

    def __post_init__(self) -> None:
        for name in ("fault_rate", "drop_rate", "slow_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value!r}")
        for name in ("latency_ms", "latency_jitter_ms", "slow_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.rate_limit is not None and self.rate_limit < 1:
            raise ValueError("rate_limit must be >= 1 request per window (or None)")
        if self.opportunities < 0:
            raise ValueError("opportunities must be >= 0")
        if not self.token:
            raise ValueError("token must not be empty")
        if any(status < 500 or status > 599 for status in self.fault_statuses):
            raise ValueError("fault_statuses must be 5xx codes")
        if not self.fault_statuses:
            raise ValueError("fault_statuses must not be empty")

    def with_knobs(self, knobs: Mapping[str, Any]) -> EmulatorConfig:
        """A copy with runtime knobs changed; unknown names raise ``ValueError``."""
        unknown = sorted(set(knobs) - set(KNOBS))
        if unknown:
            raise ValueError(f"unknown emulator knob(s): {', '.join(unknown)}")
        changes = dict(knobs)
        if "fault_statuses" in changes:
            changes["fault_statuses"] = tuple(int(s) for s in changes["fault_statuses"])
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["fault_statuses"] = list(self.fault_statuses)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EmulatorConfig:
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in fields}
        if "fault_statuses" in values:
            values["fault_statuses"] = tuple(int(s) for s in values["fault_statuses"])
        return cls(**values)
