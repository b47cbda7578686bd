"""Per-account state of a bulk run: queues, pacer, probe gate and why the account was closed."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from truto_airflow.bulk.outcomes import RowResult
from truto_airflow.bulk.pacer import AccountPacer
from truto_airflow.bulk.prepare import RowItem
from truto_airflow.bulk.spill import SpillQueue
from truto_airflow.exceptions import TrutoAPIError

__all__ = ["SPILL_AFTER_S", "AccountState", "Failure"]

#: An account whose pacer says "not before" further away than this gets its overflow spilled.
SPILL_AFTER_S = 0.5


@dataclass(eq=False)
class AccountState:
    """One integrated account's rows and health during a run (see the engine's docstring)."""

    key: str
    pacer: AccountPacer
    queue: deque[RowItem] = field(default_factory=deque)
    retry: list[tuple[float, int, RowItem]] = field(default_factory=list)
    waiting: dict[tuple[str, str], deque[RowItem]] = field(default_factory=dict)
    busy: set[tuple[str, str]] = field(default_factory=set)
    spill: SpillQueue | None = None
    dead: RowResult | None = None
    in_ring: bool = False
    #: Rounds of requests in a row that got no HTTP answer (0 = the account answers).
    strikes: int = 0
    #: While ``strikes``: one probe at a time, not before ``probe_at``.
    probe_at: float = 0.0
    probe_in_flight: bool = False
    #: When the pacer's current probe (first request, or the one after a 429) went out.
    probe_sent_at: float | None = None
    #: Opportunity id -> the failed row that stops its later rows (see the engine's docstring).
    broken: dict[str, RowResult] = field(default_factory=dict)

    def spilled(self) -> int:
        return len(self.spill) if self.spill is not None else 0

    def has_work(self) -> bool:
        return bool(self.queue or self.retry or self.spilled())

    def silent(self, now: float) -> bool:
        """Whether the account's overflow should spill instead of holding the reader: it got
        no answer lately, or its probe has been out for longer than a healthy answer takes."""
        if self.strikes:
            return True
        pacer = self.pacer
        return (
            pacer.probing
            and pacer.in_flight > 0
            and self.probe_sent_at is not None
            and now - self.probe_sent_at > SPILL_AFTER_S
        )

    def delay(self, now: float) -> float:
        """Seconds until the account may send: its pacer, and the probe gate of a silent one."""
        delay = self.pacer.delay(now)
        if self.strikes:
            if self.probe_in_flight:
                return math.inf
            delay = max(delay, self.probe_at - now)
        return delay


@dataclass(frozen=True)
class Failure:
    """Why a row failed, or an account was closed: what is kept of Truto's error, or of a
    request that got no HTTP answer (``status`` ``None``)."""

    status: int | None
    error: str
    message: str
    insight: dict[str, Any] | None = None
    remote: bool | None = None

    @classmethod
    def of(cls, error: TrutoAPIError) -> Failure:
        """What a failed row (or a closed account) keeps of Truto's error."""
        return cls(
            status=error.status_code,
            error=error.error or f"HTTP {error.status_code}",
            message=error.message or error.error or "",
            insight=error.error_insight or None,
            remote=error.is_remote_error,
        )

    @classmethod
    def no_answer(cls, exc: BaseException, detail: str) -> Failure:
        """A request that got no HTTP answer (``detail``: the exception, redacted)."""
        return cls(status=None, error=type(exc).__name__, message=detail)
