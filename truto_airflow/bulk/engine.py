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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx2

from truto_airflow.bulk.ledger import LedgerStoreError, NullLedgerStore, SuccessLedger
from truto_airflow.bulk.outcomes import (
    CORE_OUTCOMES,
    REJECTED,
    Outcome,
    RowResult,
    SummaryBuilder,
    describe_exception,
)
from truto_airflow.bulk.pacer import AccountPacer
from truto_airflow.bulk.prepare import RowItem, RowPreparer
from truto_airflow.bulk.progress import GuardedLog, ProgressReporter
from truto_airflow.bulk.rejects import RejectedRows
from truto_airflow.bulk.rows import RawRow, RowSource
from truto_airflow.bulk.runner import wait_event
from truto_airflow.bulk.sender import BulkSender
from truto_airflow.bulk.spill import SpillQueue
from truto_airflow.bulk.steps import RowStep, StepDecision, as_step, step_name
from truto_airflow.exceptions import TrutoAPIError, TrutoConfigError, TrutoError, status_policy

if TYPE_CHECKING:
    from truto_airflow.hooks.truto import TrutoHook

__all__ = ["BulkEngine", "BulkRunError", "BulkSettings", "RunStopRequested"]

log = logging.getLogger(__name__)

#: Exceptions that building one row's request raises (URL parsing, encoding): the row is invalid.
_UNSENDABLE = (httpx2.InvalidURL, ValueError)  # UnicodeError is a ValueError

#: An account whose pacer says "not before" further away than this gets its overflow spilled.
_SPILL_AFTER_S = 0.5

#: 429 answers one row may absorb before it fails.
_MAX_RATE_LIMIT_RETRIES = 20


class BulkRunError(TrutoError, RuntimeError):
    """The run stopped on an internal failure before every row was done.

    ``where`` names the part that failed (``reader``, ``worker 3``, ``ledger``, ``progress
    ticker``, ``watch``), ``cause`` is its exception and ``summary`` accounts for every row read.
    """

    def __init__(self, where: str, cause: BaseException, summary: dict[str, Any]) -> None:
        self.where = where
        self.cause = cause
        self.summary = summary
        super().__init__(f"bulk run stopped: {where} failed: {summary['aborted']['cause']}")


class RunStopRequested(TrutoError, RuntimeError):
    """The engine's ``watch`` said the run must stop (e.g. the task's supervisor is gone)."""


@dataclass(frozen=True)
class BulkSettings:
    """Tuning knobs of one bulk run (the operator maps its arguments onto these)."""

    max_concurrency: int = 32
    #: Optional cap on concurrent requests per integrated account.
    max_concurrency_per_account: int | None = None
    #: An account answering nothing but 429s for this long is closed (its rows fail).
    max_throttle_seconds: float = 300.0
    #: Rows queued or in flight at once (default ``8 * max_concurrency``).
    window: int | None = None
    #: Rows queued in memory per account (default ``2 * max_concurrency``).
    queue_per_account: int | None = None
    progress_every_rows: int | None = 1000
    progress_every_seconds: float | None = 30.0
    inline_rejected: int = 20

    def __post_init__(self) -> None:
        if self.max_concurrency < 1:
            raise TrutoConfigError("max_concurrency must be >= 1")
        if self.max_concurrency_per_account is not None and self.max_concurrency_per_account < 1:
            raise TrutoConfigError("max_concurrency_per_account must be >= 1")


@dataclass(eq=False)
class _Account:
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
    #: Opportunity id -> the failed row that stops its later rows (see the module docstring).
    broken: dict[str, RowResult] = field(default_factory=dict)

    def spilled(self) -> int:
        return len(self.spill) if self.spill is not None else 0

    def has_work(self) -> bool:
        return bool(self.queue or self.retry or self.spilled())


def _error_fields(error: TrutoAPIError) -> dict[str, Any]:
    """What a failed row (or a closed account) keeps of Truto's error."""
    return {
        "status": error.status_code,
        "error": error.error or f"HTTP {error.status_code}",
        "message": error.message or error.error or "",
        "insight": error.error_insight or None,
        "remote": error.is_remote_error,
    }


class BulkEngine:
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
        self.window = s.window or 8 * s.max_concurrency
        self.per_account = s.queue_per_account or max(2 * s.max_concurrency, 8)
        self.summary = SummaryBuilder()
        self._accounts: dict[str, _Account] = {}
        self._ring: deque[_Account] = deque()
        self._retry_seq = itertools.count()
        self._in_memory = 0
        self._spilled_total = 0
        self._input_done = False
        self._work = asyncio.Event()
        self._room = asyncio.Event()
        self._spill_dir: pathlib.Path | None = None
        self.progress: ProgressReporter | None = None
        #: Rows a worker holds (by row index) until they settle: in flight, or being planned.
        self._held: dict[int, tuple[_Account, RowItem]] = {}
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
            tasks[asyncio.create_task(self._watch(self.watch))] = "watch"
        failure: tuple[str, BaseException] | None = None
        finished = False
        try:
            failure = await self._supervise(tasks)
            finished = failure is None
        finally:
            # The flag and the wake-up end loops whose cancellation third-party code swallowed.
            self._stopping = True
            self._wake()
            self._room.set()
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

    async def _supervise(
        self, tasks: dict[asyncio.Task[None], str]
    ) -> tuple[str, BaseException] | None:
        """Wait until the reader and every worker are done; the first task to fail ends it.

        All tasks are awaited together, so a failure is seen the moment it happens (no timeout
        or polling detects it). Returns where it failed and why, or ``None`` when all is done.
        """
        pending: set[asyncio.Task[None]] = set(tasks)
        essential = {
            t for t, name in tasks.items() if name == "reader" or name.startswith("worker")
        }
        while essential & pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                name = tasks[task]
                if task.cancelled():
                    return name, asyncio.CancelledError(f"{name} was cancelled")
                exc = task.exception()
                if exc is not None:
                    return ("ledger" if isinstance(exc, LedgerStoreError) else name), exc
        return None

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
        unfinished: dict[int, RowResult] = {}

        def add(item: RowItem, sent: bool) -> None:
            outcome = Outcome.INTERRUPTED if sent else Outcome.NOT_ATTEMPTED
            unfinished.setdefault(
                item.index,
                RowResult(
                    index=item.index,
                    outcome=outcome,
                    opportunity_id=item.opportunity_id,
                    integrated_account_id=item.account,
                    attempts=item.attempts + item.throttles,
                    line=item.line,
                ),
            )

        for _acct, item in self._held.values():
            add(item, True)  # in a worker's hands: maybe sent, maybe applied
        for acct in self._accounts.values():
            for _when, _seq, item in acct.retry:
                add(item, True)
            waiting = [w for ws in acct.waiting.values() for w in ws]
            for item in itertools.chain(acct.queue, waiting):
                add(item, bool(item.attempts or item.throttles))
            if acct.spill is not None:
                while records := acct.spill.pop_many(1024):
                    for rec in records:
                        add(RowItem.from_record(rec), False)
            acct.retry.clear()
            acct.queue.clear()
            acct.waiting.clear()
        reading = self._reading
        if isinstance(reading, RowItem):
            add(reading, False)
        elif isinstance(reading, RawRow) and reading.index not in unfinished:
            data = reading.data
            opp = data.get("id") if isinstance(data, dict) else None
            unfinished[reading.index] = RowResult(
                index=reading.index,
                outcome=Outcome.NOT_ATTEMPTED,
                opportunity_id=None if opp is None else str(opp),
                line=reading.line,
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
        self._wake()

    async def _read_one(self, raw: RawRow) -> None:
        prepared = self.preparer.prepare(raw)
        if isinstance(prepared, RowResult):
            self._settle(prepared, counted=False)
            return
        self._reading = prepared
        if self.ledger.already_applied(prepared.key):
            self._settle(
                RowResult(
                    index=prepared.index,
                    outcome=Outcome.UPDATED,
                    opportunity_id=prepared.opportunity_id,
                    integrated_account_id=prepared.account,
                    already_applied=True,
                    line=prepared.line,
                ),
                counted=False,
            )
            return
        await self._admit(prepared)

    def _account(self, key: str) -> _Account:
        acct = self._accounts.get(key)
        if acct is None:
            acct = _Account(
                key,
                AccountPacer(
                    max_in_flight=self.settings.max_concurrency_per_account,
                    backoff_base=max(self.policy.backoff_base, 0.05),
                    max_wait=self.policy.max_wait,
                ),
            )
            self._accounts[key] = acct
        return acct

    def _activate(self, acct: _Account) -> None:
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
            delay = self._delay(acct, now)
            blocked = _SPILL_AFTER_S < delay < math.inf or self._silent(acct, now)
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
                self._wake()
                return
            elif blocked:
                self._spill(acct, item)
                return
            if self._stopping:
                raise asyncio.CancelledError("the run is stopping")
            self._room.clear()
            await wait_event(self._room, 0.25)

    def _spill(self, acct: _Account, item: RowItem) -> None:
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
        self._work.set()

    def _pick(self, now: float) -> tuple[_Account, RowItem] | None:
        ring = self._ring
        for _ in range(len(ring)):
            acct = ring[0]
            if not acct.has_work():
                ring.popleft()
                acct.in_ring = False
                continue
            ring.rotate(-1)
            if self._delay(acct, now) > 0:
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

    def _pop(self, acct: _Account, now: float) -> RowItem | None:
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
                self._room.set()
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

    def _silent(self, acct: _Account, now: float) -> bool:
        """Whether the account's overflow should spill instead of holding the reader: it got
        no answer lately, or its probe has been out for longer than a healthy answer takes."""
        if acct.strikes:
            return True
        pacer = acct.pacer
        return (
            pacer.probing
            and pacer.in_flight > 0
            and acct.probe_sent_at is not None
            and now - acct.probe_sent_at > _SPILL_AFTER_S
        )

    def _delay(self, acct: _Account, now: float) -> float:
        """Seconds until ``acct`` may send: its pacer, and the probe gate of a silent account."""
        delay = acct.pacer.delay(now)
        if acct.strikes:
            if acct.probe_in_flight:
                return math.inf
            delay = max(delay, acct.probe_at - now)
        return delay

    def _next_wake(self, now: float) -> float | None:
        """Seconds until some account may be able to send (``None`` = only an event helps)."""
        best = math.inf
        for acct in self._ring:
            delay = self._delay(acct, now)
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

    async def _next(self) -> tuple[_Account, RowItem] | None:
        while True:
            if self._stopping:
                return None
            now = time.monotonic()
            got = self._pick(now)
            if got is not None:
                return got
            if self._finished():
                self._wake()  # let the other idle workers see it too
                return None
            timeout = self._next_wake(now)
            self._work.clear()
            await wait_event(self._work, timeout)

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

    async def _watch(self, check: Callable[[], str | None]) -> None:
        """Polls ``check``: what it watches (a parent process) has no event to wait on."""
        while True:
            await asyncio.sleep(self.watch_every)
            reason = check()
            if reason:
                raise RunStopRequested(reason)

    # -- one row ----------------------------------------------------------------------------

    async def _process(self, acct: _Account, item: RowItem) -> None:
        for step in self.steps:
            try:
                decided = await step.run(item)
            except Exception as exc:  # a row step must settle its row, never stall the run
                text = describe_exception(exc, self.hook.redact_text)
                decided = StepDecision(
                    Outcome.FAILED,
                    f"row step {step_name(step)} failed: {text}",
                    error="plan_error",  # the error code of 0.1, kept for users' filters
                )
            if isinstance(decided, StepDecision):
                self._end_probe(acct)
                acct.pacer.release()
                self._settle(
                    self._result(
                        item, decided.outcome, error=decided.error, message=decided.message
                    ),
                    acct=acct,
                    item=item,
                )
                return
            item = decided
        item.attempts += 1
        round_ = acct.strikes
        started = time.monotonic()
        try:
            response = await self.sender.send_once(item.request)
        except httpx2.HTTPError as exc:
            now = time.monotonic()
            self.summary.request_done(None, now - started)
            self._end_probe(acct)
            acct.pacer.release()
            self._no_answer(acct, item, exc, round_, now)
            return
        except _UNSENDABLE as exc:
            # Raised while building this row's request, before any byte went out (an id too
            # long for a URL, text that cannot be encoded): the row is invalid, the run goes
            # on. Anything else is not known to be about the row: the run's supervision ends it.
            self._end_probe(acct)
            acct.pacer.release()
            self._unsendable(acct, item, exc)
            return
        now = time.monotonic()
        status = response.status_code
        self.summary.request_done(status, now - started)
        self._end_probe(acct)
        acct.strikes = 0  # any HTTP answer: the account is reachable
        acct.pacer.on_response(now, status, response.headers)
        if response.is_success:
            try:
                self.hook.check_result(response, item.request)
            except TrutoAPIError as bad:  # a 2xx that is not Truto's answer is no success
                self._fail_error(acct, item, bad)
                return
            self.ledger.record(item.key)
            self._settle(
                RowResult(
                    index=item.index,
                    outcome=Outcome.UPDATED,
                    opportunity_id=item.opportunity_id,
                    integrated_account_id=item.account,
                    status_code=status,
                    attempts=item.attempts,
                ),
                acct=acct,
                item=item,
            )
            return
        error = self.hook.api_error(response, item.request, item.attempts)
        if status == 429:
            item.attempts -= 1  # throttling is not a failed attempt; it has its own budget
            item.throttles += 1
            if acct.pacer.throttled_for(now) > self.settings.max_throttle_seconds:
                self._fail_error(acct, item, error)
                self._close_api(
                    acct,
                    error,
                    f"answered only 429 for over {self.settings.max_throttle_seconds:.0f} s",
                )
            elif item.throttles > _MAX_RATE_LIMIT_RETRIES:
                self._fail_error(acct, item, error)
            else:
                self._retry_later(acct, item, acct.pacer.blocked_until)
            return
        if status_policy(status).hook_retries and item.attempts <= self.max_retries:
            self._retry_later(acct, item, now + self.policy.wait_seconds(error, item.attempts))
            return
        self._fail_error(acct, item, error)
        if status_policy(status).closes_account:  # dead token, missing scopes, blocked
            self._close_api(acct, error, f"answered {status}")

    def _end_probe(self, acct: _Account) -> None:
        # Only one request is in flight while an account is probed, so any end is the probe's.
        if acct.strikes:
            acct.probe_in_flight = False

    def _no_answer(
        self, acct: _Account, item: RowItem, exc: httpx2.HTTPError, round_: int, now: float
    ) -> None:
        """A request got no HTTP answer: retry the row, probe the account, or close it."""
        detail = describe_exception(exc, self.hook.redact_text)
        if not self.policy.is_retryable(exc):
            self._fail(acct, item, None, type(exc).__name__, detail)
            return
        if round_ == acct.strikes:
            # The first failure of this round (others in flight when it began do not count).
            acct.strikes += 1
            acct.probe_at = now + self.policy.wait_seconds(exc, acct.strikes)
        if acct.strikes >= self.silent_rounds:
            self._fail(acct, item, None, type(exc).__name__, detail)
            self._close(
                acct,
                f"got no HTTP answer to {acct.strikes} attempts in a row",
                status=None,
                error=type(exc).__name__,
                message=detail,
            )
        elif item.attempts <= self.max_retries:
            self._retry_later(acct, item, now + self.policy.wait_seconds(exc, item.attempts))
        else:
            self._fail(acct, item, None, type(exc).__name__, detail)

    def _unsendable(self, acct: _Account, item: RowItem, exc: Exception) -> None:
        detail = describe_exception(exc, self.hook.redact_text)
        self._settle(
            self._result(
                item,
                Outcome.INVALID,
                error="invalid_row",
                message=f"row {item.index} could not be sent as a request: {detail}",
            ),
            acct=acct,
            item=item,
        )

    def _retry_later(self, acct: _Account, item: RowItem, not_before: float) -> None:
        if acct.dead is not None:
            self._settle(self._closed_result(acct, item), acct=acct, item=item)
            return
        self.summary.retries += 1
        heapq.heappush(acct.retry, (not_before, next(self._retry_seq), item))
        self._activate(acct)
        self._wake()

    @staticmethod
    def _result(item: RowItem, outcome: Outcome, **fields: Any) -> RowResult:
        """A row's outcome with the row's identity (index, ids, line, body) filled in."""
        return RowResult(
            index=item.index,
            outcome=outcome,
            opportunity_id=item.opportunity_id,
            integrated_account_id=item.account,
            line=item.line,
            body=item.request.json_body,
            **fields,
        )

    def _fail_error(self, acct: _Account, item: RowItem, error: TrutoAPIError) -> None:
        self._fail(acct, item, **_error_fields(error))

    def _fail(
        self,
        acct: _Account,
        item: RowItem,
        status: int | None,
        error: str,
        message: str,
        *,
        insight: dict[str, Any] | None = None,
        remote: bool | None = None,
    ) -> None:
        self._settle(
            self._result(
                item,
                Outcome.FAILED,
                status_code=status,
                error=error,
                message=message,
                error_insight=insight,
                is_remote_error=remote,
                attempts=item.attempts + item.throttles,
            ),
            acct=acct,
            item=item,
        )

    def _closed_result(self, acct: _Account, item: RowItem) -> RowResult:
        dead = acct.dead
        assert dead is not None
        return self._result(
            item,
            Outcome.FAILED,
            status_code=dead.status_code,
            error=dead.error,
            message=dead.message,
            error_insight=dead.error_insight,
            is_remote_error=dead.is_remote_error,
            not_sent=True,
        )

    def _close_api(self, acct: _Account, error: TrutoAPIError, why: str) -> None:
        self._close(acct, why, **_error_fields(error))

    def _close(
        self,
        acct: _Account,
        why: str,
        *,
        status: int | None,
        error: str | None,
        message: str,
        insight: dict[str, Any] | None = None,
        remote: bool | None = None,
    ) -> None:
        """Fail every row of this account still waiting; rows in flight finish on their own."""
        if acct.dead is not None:
            return
        acct.dead = RowResult(
            index=-1,
            outcome=Outcome.FAILED,
            status_code=status,
            error=error,
            message=(
                f"not sent: integrated account {acct.key} {why} earlier in this run "
                f"({message}); fix the account or token and retry the task"
            ),
            error_insight=insight,
            is_remote_error=remote,
        )
        self.log.warning(
            "Integrated account %s %s (%s): its remaining rows fail without being sent; "
            "other accounts continue",
            acct.key,
            why,
            message,
        )
        acct.broken.clear()
        self._drain_closed(acct)

    def _held_result(self, item: RowItem, cause: RowResult) -> RowResult:
        return self._result(
            item,
            Outcome.FAILED,
            status_code=cause.status_code,
            error="earlier_row_failed",
            message=(
                f"not sent: row {cause.index} for this opportunity failed earlier in this run "
                f"({cause.error}); sending this later row would apply the opportunity's rows "
                f"out of order. Fix row {cause.index} and retry the task: it applies both, in "
                "order"
            ),
            not_sent=True,
        )

    def _drain_closed(self, acct: _Account) -> None:
        pending: list[RowItem] = [entry[2] for entry in acct.retry]
        acct.retry.clear()
        pending.extend(acct.queue)
        acct.queue.clear()
        for waiters in acct.waiting.values():
            pending.extend(waiters)
        acct.waiting.clear()
        for item in pending:
            acct.busy.discard(item.lock_key)
            self._settle(self._closed_result(acct, item), counted=True)
        if acct.spill is not None:
            while records := acct.spill.pop_many(1024):
                for rec in records:
                    self._settle(self._closed_result(acct, RowItem.from_record(rec)), counted=False)

    def _settle(
        self,
        result: RowResult,
        *,
        acct: _Account | None = None,
        item: RowItem | None = None,
        counted: bool = True,
    ) -> None:
        """Record a row's one and only outcome and free what it held."""
        self._held.pop(result.index, None)
        reading = self._reading
        if reading is not None and reading.index == result.index:
            self._reading = None
        self.summary.record(result)
        if result.outcome in REJECTED:
            self.rejected.add(result)
        if acct is not None and item is not None:
            if result.outcome is Outcome.FAILED and acct.dead is None:
                acct.broken.setdefault(
                    item.opportunity_id,
                    RowResult(
                        index=result.index,
                        outcome=result.outcome,
                        status_code=result.status_code,
                        error=result.error,
                    ),
                )
            lock = item.lock_key
            acct.busy.discard(lock)
            waiters = acct.waiting.get(lock)
            if waiters:
                acct.queue.appendleft(waiters.popleft())
                if not waiters:
                    del acct.waiting[lock]
                self._activate(acct)
            if acct.dead is not None:
                self._drain_closed(acct)
        if counted:
            self._in_memory -= 1
            self._room.set()
            self._wake()
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
