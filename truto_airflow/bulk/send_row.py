"""Sending one row and settling its one outcome: retries, failures, closed accounts, ordering."""

from __future__ import annotations

import heapq
import itertools
import time
from dataclasses import replace
from typing import TYPE_CHECKING

import httpx2

from truto_airflow.bulk.accounts import AccountState
from truto_airflow.bulk.ledger import SuccessLedger
from truto_airflow.bulk.outcomes import (
    REJECTED,
    Failure,
    Outcome,
    RowResult,
    SummaryBuilder,
    describe_exception,
)
from truto_airflow.bulk.prepare import RowItem
from truto_airflow.bulk.progress import GuardedLog, ProgressReporter
from truto_airflow.bulk.rejects import RejectedRows
from truto_airflow.bulk.rows import RawRow
from truto_airflow.bulk.sender import BulkSender
from truto_airflow.bulk.steps import RowStep, StepDecision, step_name
from truto_airflow.bulk.wakeup import BatchWaiters, Waiters
from truto_airflow.exceptions import TrutoAPIError, status_policy
from truto_airflow.retry import RetryPolicy

if TYPE_CHECKING:
    from truto_airflow.bulk.engine import BulkSettings
    from truto_airflow.hooks.truto import TrutoHook

__all__ = ["RowSending"]

#: Exceptions that building one row's request raises (URL parsing, encoding): the row is invalid.
_UNSENDABLE = (httpx2.InvalidURL, ValueError)  # UnicodeError is a ValueError

#: 429 answers one row may absorb before it fails.
_MAX_RATE_LIMIT_RETRIES = 20


class RowSending:
    """The :class:`~truto_airflow.bulk.engine.BulkEngine`'s per-row half: one attempt of a row,
    and the bookkeeping of its outcome (the engine's scheduling calls these)."""

    hook: TrutoHook
    settings: BulkSettings
    ledger: SuccessLedger
    rejected: RejectedRows
    steps: list[RowStep]
    log: GuardedLog
    sender: BulkSender
    policy: RetryPolicy
    max_retries: int
    silent_rounds: int
    summary: SummaryBuilder
    progress: ProgressReporter | None
    _retry_seq: itertools.count[int]
    _in_memory: int
    _room: BatchWaiters
    _idle: Waiters
    _held: dict[int, tuple[AccountState, RowItem]]
    _reading: RawRow | RowItem | None

    if TYPE_CHECKING:  # scheduling, in the engine

        def _wake(self) -> None: ...

        def _activate(self, acct: AccountState) -> None: ...

        def _counts(self) -> dict[str, int]: ...

        def _extra(self) -> str: ...

    async def _process(self, acct: AccountState, item: RowItem) -> None:
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
                self._settle(RowResult.decided(item, decided), acct=acct, item=item)
                return
            item = decided
        item.attempts += 1
        round_ = acct.strikes
        started = time.monotonic()
        try:
            answer = await self.sender.send_once(item.request)
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
        status = answer.status_code
        self.summary.request_done(status, now - started)
        closed = acct.strikes or acct.pacer.probing
        self._end_probe(acct)
        acct.strikes = 0  # any HTTP answer: the account is reachable
        acct.pacer.on_response(now, status, answer.headers)
        if closed and not acct.pacer.probing:
            self._idle.wake_all()  # a probe's answer opened the account to many sends at once
        if 200 <= status < 300:
            if not self.hook.is_result(status, answer.content, item.request):
                try:  # a 2xx that is not Truto's answer is no success: the hook says why
                    self.hook.check_result(answer.response(), item.request)
                except TrutoAPIError as bad:
                    self._fail(acct, item, Failure.of(bad))
                    return
            self.ledger.record(item.key)
            self._settle(RowResult.updated(item, status), acct=acct, item=item)
            return
        error = self.hook.api_error(answer.response(), item.request, item.attempts)
        if status == 429:
            item.attempts -= 1  # throttling is not a failed attempt; it has its own budget
            item.throttles += 1
            if acct.pacer.throttled_for(now) > self.settings.max_throttle_seconds:
                self._fail(acct, item, Failure.of(error))
                self._close(
                    acct,
                    f"answered only 429 for over {self.settings.max_throttle_seconds:.0f} s",
                    Failure.of(error),
                )
            elif item.throttles > _MAX_RATE_LIMIT_RETRIES:
                self._fail(acct, item, Failure.of(error))
            else:
                self._retry_later(acct, item, acct.pacer.blocked_until)
            return
        if status_policy(status).hook_retries and item.attempts <= self.max_retries:
            self._retry_later(acct, item, now + self.policy.wait_seconds(error, item.attempts))
            return
        self._fail(acct, item, Failure.of(error))
        if status_policy(status).closes_account:  # dead token, missing scopes, blocked
            self._close(acct, f"answered {status}", Failure.of(error))

    def _end_probe(self, acct: AccountState) -> None:
        # Only one request is in flight while an account is probed, so any end is the probe's.
        if acct.strikes:
            acct.probe_in_flight = False

    def _no_answer(
        self, acct: AccountState, item: RowItem, exc: httpx2.HTTPError, round_: int, now: float
    ) -> None:
        """A request got no HTTP answer: retry the row, probe the account, or close it."""
        failure = Failure.no_answer(exc, describe_exception(exc, self.hook.redact_text))
        if not self.policy.is_retryable(exc):
            self._fail(acct, item, failure)
            return
        if round_ == acct.strikes:
            # The first failure of this round (others in flight when it began do not count).
            acct.strikes += 1
            acct.probe_at = now + self.policy.wait_seconds(exc, acct.strikes)
        if acct.strikes >= self.silent_rounds:
            self._fail(acct, item, failure)
            self._close(acct, f"got no HTTP answer to {acct.strikes} attempts in a row", failure)
        elif item.attempts <= self.max_retries:
            self._retry_later(acct, item, now + self.policy.wait_seconds(exc, item.attempts))
        else:
            self._fail(acct, item, failure)

    def _unsendable(self, acct: AccountState, item: RowItem, exc: Exception) -> None:
        detail = describe_exception(exc, self.hook.redact_text)
        self._settle(
            RowResult.invalid(
                item, "invalid_row", f"row {item.index} could not be sent as a request: {detail}"
            ),
            acct=acct,
            item=item,
        )

    def _retry_later(self, acct: AccountState, item: RowItem, not_before: float) -> None:
        if acct.dead is not None:
            self._settle(self._closed_result(acct, item), acct=acct, item=item)
            return
        self.summary.retries += 1
        heapq.heappush(acct.retry, (not_before, next(self._retry_seq), item))
        self._activate(acct)
        self._wake()

    def _fail(self, acct: AccountState, item: RowItem, failure: Failure) -> None:
        result = RowResult.failed(item, failure, attempts=item.attempts + item.throttles)
        self._settle(result, acct=acct, item=item)

    def _closed_result(self, acct: AccountState, item: RowItem) -> RowResult:
        assert acct.dead is not None
        return RowResult.failed(item, acct.dead, not_sent=True)

    def _close(self, acct: AccountState, why: str, failure: Failure) -> None:
        """Fail every row of this account still waiting; rows in flight finish on their own."""
        if acct.dead is not None:
            return
        acct.dead = replace(  # the account's failure, told to each row it stops
            failure,
            message=f"not sent: integrated account {acct.key} {why} earlier in this run "
            f"({failure.message}); fix the account or token and retry the task",
        )
        self.log.warning(
            "Integrated account %s %s (%s): its remaining rows fail without being sent; "
            "other accounts continue",
            acct.key,
            why,
            failure.message,
        )
        acct.broken.clear()
        self._drain_closed(acct)

    def _held_result(self, item: RowItem, cause: Failure) -> RowResult:
        return RowResult.failed(item, cause, not_sent=True)

    def _drain_closed(self, acct: AccountState) -> None:
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
        acct: AccountState | None = None,
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
            if (
                result.outcome is Outcome.FAILED
                and acct.dead is None
                and item.opportunity_id not in acct.broken
            ):
                acct.broken[item.opportunity_id] = result.holds_back()
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
            self._room.signal()  # the reader, if it waits for room (once per batch)
            # No worker is woken here: rows settle in a worker, which looks for work next.
        progress = self.progress
        if progress is not None and progress.due(self.summary.done):
            progress.maybe_report(self.summary.done, self._counts(), self._extra(), force=True)
