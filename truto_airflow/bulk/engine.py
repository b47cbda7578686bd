"""The bulk engine: bounded concurrency, per-account pacing and isolation, one outcome per row.

Shape of a run::

    reader ──prepare──► per-account queues ──pick (round robin, pacer says go)──► C workers
       │                    │    ▲                                               │
       │ (ledger: already   │    └─ retry heap (5xx/network backoff, 429 block) ◄┘
       │  applied → done)   └─ spill file (account throttled, queue full)

* Memory is bounded by ``window`` rows in flight or queued (plus at most one queued row per
  account); a throttled account's overflow goes to a local spill file, never to memory, and never
  blocks the reader for the other accounts.
* Each account has its own :class:`~truto_airflow.bulk.pacer.AccountPacer`. An account that
  answers 401/403/503 (dead token, missing scopes, blocked account) or only 429s for longer than
  ``max_throttle_seconds`` is closed: its remaining rows fail at once with the reason, unsent.
* Rows for the same opportunity of the same account are applied in input order (never two in
  flight at once), so the last row wins as it would in a sequential loop. When one of them
  fails, the later ones are not sent (``failed``, ``not_sent``): the CRM then holds a prefix of
  the input for that opportunity, and a task retry applies the rest in order (a later row
  applied before an earlier one is retried would let the earlier one win).
* An account whose requests get no HTTP answer at all (connections refused or dropped) is probed
  one request at a time with the retry policy's backoff (its other rows wait in the spill file,
  not in the window); after ``max(max_retries, 2) + 1`` such rounds in a row it is closed like a
  401/403 account. So it never holds more than one slot, or the reader, from healthy accounts.
* Nothing about one row (its shape, its serialisation, its URL) ends the run: whatever preparing
  it raises, or building its request raises while sending, the row ends ``invalid`` with the
  reason. An exception not known to be about the row (a transport bug) is the supervisor's.
* A 2xx whose body is not the JSON object Truto returns (a proxy's HTML page, truncated JSON) is
  not a success: the row ends ``failed``.
* Retries reuse the row's Idempotency-Key, so a retry after a lost answer is replayed by Truto
  rather than applied twice.
* Supervision: the reader, the workers, the progress ticker and the optional watch run as tasks
  awaited together (``asyncio.wait``), so the first one to fail is seen at once, whatever it was
  doing; the others are cancelled and awaited, every row read so far gets an outcome
  (``not_attempted`` / ``interrupted`` for those cut short) and :class:`BulkRunError` carries the
  cause and that summary. Nothing waits on a coroutine that is gone (the reader used to wait for
  room that only dead workers could free).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
import pathlib
import shutil
import tempfile
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from truto_airflow.bulk.accounts import SPILL_AFTER_S, AccountState
from truto_airflow.bulk.ledger import NullLedgerStore, SuccessLedger
from truto_airflow.bulk.outcomes import CORE_OUTCOMES, RowResult, SummaryBuilder
from truto_airflow.bulk.pacer import AccountPacer
from truto_airflow.bulk.prepare import RowItem, RowPreparer
from truto_airflow.bulk.progress import GuardedLog, ProgressReporter
from truto_airflow.bulk.rejects import RejectedRows
from truto_airflow.bulk.rows import RawRow, RowSource
from truto_airflow.bulk.runner import frozen_heap
from truto_airflow.bulk.send_row import RowSending
from truto_airflow.bulk.sender import BulkSender
from truto_airflow.bulk.spill import SpillQueue
from truto_airflow.bulk.steps import RowStep, as_step
from truto_airflow.bulk.supervise import (
    BulkRunError,
    RunStopRequested,
    supervise,
    unfinished_results,
    watch_loop,
)
from truto_airflow.bulk.wakeup import BatchWaiters, Waiters
from truto_airflow.exceptions import TrutoConfigError

if TYPE_CHECKING:
    from truto_airflow.hooks.truto import TrutoHook

__all__ = ["BulkEngine", "BulkRunError", "BulkSettings", "RunStopRequested"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BulkSettings:
    """Tuning knobs of one bulk run (the operator maps its arguments onto these)."""

    max_concurrency: int = 32
    #: Optional cap on concurrent requests per integrated account.
    max_concurrency_per_account: int | None = None
    #: An account answering nothing but 429s for this long is closed (its rows fail).
    max_throttle_seconds: float = 300.0
    progress_every_rows: int | None = 1000
    progress_every_seconds: float | None = 30.0
    inline_rejected: int = 20

    def __post_init__(self) -> None:
        if self.max_concurrency < 1:
            raise TrutoConfigError("max_concurrency must be >= 1")
        if self.max_concurrency_per_account is not None and self.max_concurrency_per_account < 1:
            raise TrutoConfigError("max_concurrency_per_account must be >= 1")


class BulkEngine(RowSending):
    """Runs one bulk update. Use once: ``summary = await engine.run(source)``.

    ``watch``, when given, is asked every :attr:`watch_every` seconds whether the run must stop
    (a reason string) or not (``None``): for conditions that offer no event to wait on, such as the
    parent process being gone.
    """

    #: Seconds between two calls of ``watch``.
    watch_every: float = 1.0
    #: Builds the progress reporter (a seam for tests and custom reporting).
    progress_factory: Callable[..., ProgressReporter] = ProgressReporter

    def __init__(
        self,
        hook: TrutoHook,
        preparer: RowPreparer,
        *,
        settings: BulkSettings | None = None,
        ledger: SuccessLedger | None = None,
        rejected: RejectedRows | None = None,
        steps: Sequence[RowStep] = (),
        logger: Any = None,
        watch: Callable[[], str | None] | None = None,
    ) -> None:
        self.hook = hook
        self.preparer = preparer
        self.settings = settings or BulkSettings()
        self.ledger = ledger or SuccessLedger(NullLedgerStore())
        self.rejected = rejected or RejectedRows(inline_limit=self.settings.inline_rejected)
        self.steps = [as_step(step) for step in steps]
        self.log = GuardedLog.wrap(logger or log)
        self.watch = watch
        self.sender = BulkSender(hook)
        self.policy = hook.retry_policy
        s = self.settings
        self.max_retries = self.policy.max_retries
        #: Probe rounds without any HTTP answer after which an account is closed: a row's own
        #: attempts, but never fewer than three (one dropped connection is not a dead account).
        self.silent_rounds = max(self.max_retries, 2) + 1
        #: Rows queued or in flight at once: the memory bound, whatever the input's size.
        self.window = 8 * s.max_concurrency
        #: Rows of one account queued in memory; the rest of a busy account waits in its spill.
        self.per_account = max(2 * s.max_concurrency, 8)
        self.summary = SummaryBuilder()
        self._accounts: dict[str, AccountState] = {}
        self._ring: deque[AccountState] = deque()
        self._retry_seq = itertools.count()
        self._in_memory = 0
        self._spilled_total = 0
        self._input_done = False
        #: Workers with nothing to send, parked until work appears (woken one at a time).
        self._idle = Waiters()
        #: The reader, parked while the window or its account's queue is full; woken once a
        #: batch of rows has settled (at most a quarter of an account's queue: workers never run
        #: dry), not per row: it admitted one row and parked again, ~7 % of a row's CPU at c=32.
        self._room = BatchWaiters(max(1, min(16, self.per_account // 4)))
        self._spill_dir: pathlib.Path | None = None
        self.progress: ProgressReporter | None = None
        #: Rows a worker holds (by row index) until they settle: in flight, or being planned.
        self._held: dict[int, tuple[AccountState, RowItem]] = {}
        #: The row the reader holds between reading it and settling or queueing it.
        self._reading: RawRow | RowItem | None = None
        self._ledger_failures_seen = 0
        self._stopping = False
        #: The last summary built by :meth:`run` (also when it stopped early).
        self.result: dict[str, Any] | None = None

    # -- public ---------------------------------------------------------------------------

    async def run(self, source: RowSource) -> dict[str, Any]:
        """Process every row of ``source``; return the summary (counts, never all rows).

        Raises :class:`BulkRunError` (with the summary so far) when a part of the engine fails.
        """
        s = self.settings
        self.progress = self.progress_factory(
            self.log,
            every_rows=s.progress_every_rows,
            every_seconds=s.progress_every_seconds,
            total=source.total,
        )
        started = time.monotonic()
        tasks = {asyncio.create_task(self._read(source)): "reader"}
        for n in range(s.max_concurrency):
            tasks[asyncio.create_task(self._worker())] = f"worker {n}"
        tasks[asyncio.create_task(self._ticker())] = "progress ticker"
        if self.watch is not None:
            tasks[asyncio.create_task(watch_loop(self.watch, self.watch_every))] = "watch"
        failure: tuple[str, BaseException] | None = None
        finished = False
        try:
            with frozen_heap():
                failure = await supervise(tasks)
            finished = failure is None
        finally:
            # The flag and the wake-up end loops whose cancellation third-party code swallowed.
            self._stopping = True
            self._idle.wake_all()
            self._room.wake_all()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if not finished:  # failed, or cancelled from outside: account for the rest
                self._settle_unfinished()
            self._flush_ledger()
            self._cleanup_spill()
            stopped = failure
            if stopped is None and not finished:
                stopped = ("caller", asyncio.CancelledError("the run was cancelled"))
            self.result = self._build(started, stopped)
        if failure is not None:
            where, cause = failure
            if not isinstance(cause, Exception):  # a task timeout, KeyboardInterrupt: as is
                raise cause
            raise BulkRunError(where, cause, self.result) from cause
        return self.result

    def _build(self, started: float, failure: tuple[str, BaseException] | None) -> dict[str, Any]:
        duration = time.monotonic() - started
        if failure is None and self.progress is not None:
            self.progress.maybe_report(self.summary.done, self._counts(), force=True)
        result = self.summary.build(duration=duration, rejected=self.rejected.finish())
        result["spilled_rows"] = self._spilled_total
        result["ledger"] = self.ledger.describe()
        if failure is not None:
            where, cause = failure
            result["aborted"] = {
                "where": where,
                "cause": self.hook.redact_text(f"{type(cause).__name__}: {cause}"),
            }
        if self.log.failures:
            result["log_write_failures"] = self.log.failures
        return result

    def _flush_ledger(self) -> None:
        """The end-of-run write; rows it cannot store are reported, not raised."""
        if self.ledger.flush():
            return
        self.log.warning(
            "Ledger (%s) could not record %d applied row(s) (%s): a retry of this task would send "
            "them again, and their Idempotency-Keys make Truto replay them, not apply them twice",
            self.ledger.store.description,
            self.ledger.unsaved,
            self.ledger.last_error,
        )

    def _settle_unfinished(self) -> None:
        """After a stop: each row read but not finished is ``interrupted`` or ``not_attempted``."""
        unfinished = unfinished_results(
            (item for _acct, item in self._held.values()), self._accounts.values(), self._reading
        )
        self._held.clear()
        self._reading = None
        self._in_memory = 0
        for index in sorted(unfinished):
            self.summary.record(unfinished[index])

    # -- reading and admission -----------------------------------------------------------

    async def _read(self, source: RowSource) -> None:
        for n, raw in enumerate(source.rows, start=1):
            self._reading = raw
            if n % 8 == 0:
                # Validation is CPU work: yield often so answers waiting in the loop are read
                # promptly (long stretches here show up as latency and lost throughput).
                await asyncio.sleep(0)
            await self._read_one(raw)
            self._reading = None
        self._input_done = True
        self._idle.wake_all()  # each idle worker must see that the input is done

    async def _read_one(self, raw: RawRow) -> None:
        prepared = self.preparer.prepare(raw)
        if isinstance(prepared, RowResult):
            self._settle(prepared, counted=False)
            return
        self._reading = prepared
        if self.ledger.already_applied(prepared.key):
            self._settle(RowResult.applied_earlier(prepared), counted=False)
            return
        await self._admit(prepared)

    def _account(self, key: str) -> AccountState:
        acct = self._accounts.get(key)
        if acct is None:
            acct = AccountState(
                key,
                AccountPacer(
                    max_in_flight=self.settings.max_concurrency_per_account,
                    backoff_base=max(self.policy.backoff_base, 0.05),
                    max_wait=self.policy.max_wait,
                ),
            )
            self._accounts[key] = acct
        return acct

    def _activate(self, acct: AccountState) -> None:
        if not acct.in_ring:
            acct.in_ring = True
            self._ring.append(acct)

    async def _admit(self, item: RowItem) -> None:
        acct = self._account(item.account)
        while True:
            if acct.dead is not None:
                self._settle(self._closed_result(acct, item), counted=False)
                return
            now = time.monotonic()
            delay = acct.delay(now)
            blocked = SPILL_AFTER_S < delay < math.inf or acct.silent(now)
            if acct.spilled():
                if blocked:
                    self._spill(acct, item)
                    return
            elif len(acct.queue) < self.per_account and (
                self._in_memory < self.window or not acct.queue
            ):
                acct.queue.append(item)
                self._in_memory += 1
                self._activate(acct)
                if self._idle.pending < len(acct.queue):
                    self._wake()  # else a worker already woken will take it
                return
            elif blocked:
                self._spill(acct, item)
                return
            if self._stopping:
                raise asyncio.CancelledError("the run is stopping")
            await self._room.wait(0.25)

    def _spill(self, acct: AccountState, item: RowItem) -> None:
        if acct.spill is None:
            if self._spill_dir is None:
                self._spill_dir = pathlib.Path(tempfile.mkdtemp(prefix="truto-bulk-spill-"))
            acct.spill = SpillQueue(self._spill_dir / f"account-{len(self._accounts)}-{id(acct)}")
        acct.spill.push(item.to_record())
        self._spilled_total += 1
        self._activate(acct)

    def _cleanup_spill(self) -> None:
        for acct in self._accounts.values():
            if acct.spill is not None:
                acct.spill.close()
        if self._spill_dir is not None:
            shutil.rmtree(self._spill_dir, ignore_errors=True)

    # -- scheduling ------------------------------------------------------------------------

    def _wake(self) -> None:
        """Work appeared (a row queued or due): one idle worker is enough to take it."""
        self._idle.wake_one()

    def _pick(self, now: float) -> tuple[AccountState, RowItem] | None:
        ring = self._ring
        for _ in range(len(ring)):
            acct = ring[0]
            if not acct.has_work():
                ring.popleft()
                acct.in_ring = False
                continue
            ring.rotate(-1)
            if acct.delay(now) > 0:
                continue
            item = self._pop(acct, now)
            if item is None:
                continue
            if acct.pacer.probing:
                acct.probe_sent_at = now
            acct.pacer.acquire(now)
            if acct.strikes:
                acct.probe_in_flight = True
            return acct, item
        return None

    def _pop(self, acct: AccountState, now: float) -> RowItem | None:
        if acct.dead is not None:
            self._drain_closed(acct)
            return None
        if acct.retry and acct.retry[0][0] <= now:
            return heapq.heappop(acct.retry)[2]
        while True:
            if not acct.queue and acct.spill is not None and len(acct.spill):
                records = acct.spill.pop_many(self.per_account)
                acct.queue.extend(RowItem.from_record(r) for r in records)
                self._in_memory += len(records)
                self._room.wake_all()
            if not acct.queue:
                return None
            item = acct.queue.popleft()
            lock = item.lock_key
            if lock in acct.busy:
                acct.waiting.setdefault(lock, deque()).append(item)
                continue
            cause = acct.broken.get(item.opportunity_id)
            if cause is not None:
                self._settle(self._held_result(item, cause), acct=acct, item=item)
                continue
            acct.busy.add(lock)
            return item

    def _next_wake(self, now: float) -> float | None:
        """Seconds until some account may be able to send (``None`` = only an event helps)."""
        best = math.inf
        for acct in self._ring:
            delay = acct.delay(now)
            if not (acct.queue or acct.spilled()):
                if not acct.retry:
                    continue
                delay = max(delay, acct.retry[0][0] - now)
            best = min(best, delay)
        return None if best == math.inf else max(best, 0.001)

    def _finished(self) -> bool:
        return (
            self._input_done and self._in_memory == 0 and not any(a.spilled() for a in self._ring)
        )

    async def _next(self) -> tuple[AccountState, RowItem] | None:
        while True:
            if self._stopping:
                return None
            now = time.monotonic()
            got = self._pick(now)
            if got is not None:
                acct = got[0]
                if self._idle.pending < len(acct.queue) and acct.delay(now) <= 0:
                    self._wake()  # more to send right now: pass it on to an idle worker
                return got
            if self._finished():
                self._idle.wake_all()  # let the other idle workers see it too
                return None
            await self._idle.wait(self._next_wake(now))

    async def _worker(self) -> None:
        while True:
            got = await self._next()
            if got is None:
                return
            acct, item = got
            self._held[item.index] = got
            await self._process(acct, item)
            self._check_ledger()

    def _check_ledger(self) -> None:
        """Say when the ledger store failed; stop the run when it was given up on."""
        ledger = self.ledger
        if ledger.flush_failures != self._ledger_failures_seen:
            self._ledger_failures_seen = ledger.flush_failures
            if ledger.error is None:
                self.log.warning(
                    "Ledger store (%s) failed (%s): %d applied row(s) kept in memory, next write "
                    "in %.0f s",
                    ledger.store.description,
                    ledger.last_error,
                    ledger.unsaved,
                    ledger.retry_in(),
                )
        if ledger.error is not None:
            raise ledger.error

    async def _ticker(self) -> None:
        every = self.settings.progress_every_seconds
        if not every:
            return
        while True:
            await asyncio.sleep(min(every, 5.0))
            progress = self.progress
            if progress is not None and progress.due(self.summary.done):
                progress.maybe_report(self.summary.done, self._counts(), self._extra(), force=True)

    def _counts(self) -> dict[str, int]:
        counts = Counter(self.summary.outcomes)
        core = {o.value for o in CORE_OUTCOMES}
        return {o.value: counts.get(o.value, 0) for o in CORE_OUTCOMES} | {
            k: v for k, v in counts.items() if k not in core
        }

    def _extra(self) -> str:
        now = time.monotonic()
        throttled = sum(1 for a in self._accounts.values() if a.pacer.blocked_until > now)
        parts = [
            f"; requests={self.summary.requests_sent:,}",
            f"429s={self.summary.rate_limited:,}",
        ]
        if throttled:
            parts.append(f"throttled accounts={throttled}")
        closed = sum(1 for a in self._accounts.values() if a.dead is not None)
        if closed:
            parts.append(f"closed accounts={closed}")
        return ", ".join(parts)
