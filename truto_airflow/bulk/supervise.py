"""Supervision of a bulk run: the first task to fail stops it; unfinished rows get an outcome."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterable
from typing import Any

from truto_airflow.bulk.accounts import AccountState
from truto_airflow.bulk.ledger import LedgerStoreError
from truto_airflow.bulk.outcomes import RowResult
from truto_airflow.bulk.prepare import RowItem
from truto_airflow.bulk.rows import RawRow
from truto_airflow.exceptions import TrutoError

__all__ = ["BulkRunError", "RunStopRequested", "supervise", "unfinished_results", "watch_loop"]


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


async def supervise(tasks: dict[asyncio.Task[None], str]) -> tuple[str, BaseException] | None:
    """Wait until the reader and every worker are done; the first task to fail ends it.

    All tasks are awaited together, so a failure is seen the moment it happens (no timeout
    or polling detects it). Returns where it failed and why, or ``None`` when all is done.
    """
    pending: set[asyncio.Task[None]] = set(tasks)
    essential = {t for t, name in tasks.items() if name == "reader" or name.startswith("worker")}
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


async def watch_loop(check: Callable[[], str | None], every: float) -> None:
    """Polls ``check``: what it watches (a parent process) has no event to wait on."""
    while True:
        await asyncio.sleep(every)
        reason = check()
        if reason:
            raise RunStopRequested(reason)


def unfinished_results(
    held: Iterable[RowItem],
    accounts: Iterable[AccountState],
    reading: RawRow | RowItem | None,
) -> dict[int, RowResult]:
    """After a stop: each row read but not finished is ``interrupted`` or ``not_attempted``.

    Empties the accounts' queues, retry heaps, waiting lists and spill files on the way.
    """
    unfinished: dict[int, RowResult] = {}

    def add(item: RowItem, sent: bool) -> None:
        unfinished.setdefault(item.index, RowResult.cut_short(item, sent=sent))

    for item in held:
        add(item, True)  # in a worker's hands: maybe sent, maybe applied
    for acct in accounts:
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
    if isinstance(reading, RowItem):
        add(reading, False)
    elif isinstance(reading, RawRow) and reading.index not in unfinished:
        data = reading.data
        opp = data.get("id") if isinstance(data, dict) else None
        unfinished[reading.index] = RowResult.not_attempted(
            reading.index, None if opp is None else str(opp), reading.line
        )
    return unfinished
