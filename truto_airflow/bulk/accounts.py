"""Per-account state of a bulk run: queues, pacer, probe gate and why the account was closed."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from truto_airflow.bulk.outcomes import Failure
from truto_airflow.bulk.pacer import AccountPacer
from truto_airflow.bulk.prepare import RowItem
from truto_airflow.bulk.spill import SpillQueue

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
    #: Why the account was closed: the failure each of its unsent rows ends with.
    dead: Failure | None = None
    in_ring: bool = False
    #: Rounds of requests in a row that got no HTTP answer (0 = the account answers).
    strikes: int = 0
    #: While ``strikes``: one probe at a time, not before ``probe_at``.
    probe_at: float = 0.0
    probe_in_flight: bool = False
    #: When the pacer's current probe (first request, or the one after a 429) went out.
    probe_sent_at: float | None = None
    #: Opportunity id -> the failure its later rows end with, unsent, once one of its rows
    #: failed (see the engine's docstring).
    broken: dict[str, Failure] = field(default_factory=dict)

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
