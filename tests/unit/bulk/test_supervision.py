"""Internal failures end the run promptly and honestly (issue 9): fault injection.

Every run here ends by the engine's own structure (a failed task is seen at once, the others are
cancelled and awaited). ``SAFETY_NET_S`` only turns a regression (a hang) into a failed test
instead of a stuck CI job; it is far above what any of these runs takes (well under a second).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
import structlog

from tests.unit.bulk.conftest import ACCOUNTS, make_engine, opp_id, rows_for
from truto_airflow.bulk.engine import BulkEngine, BulkRunError, BulkSettings
from truto_airflow.bulk.ledger import LedgerStoreError, MemoryLedgerStore, SuccessLedger
from truto_airflow.bulk.progress import ProgressReporter
from truto_airflow.bulk.rows import RawRow, RowSource, open_source

SAFETY_NET_S = 60.0


def ok(request: httpx2.Request) -> httpx2.Response:
    return httpx2.Response(200, json={"id": opp_id(request)})


def run_to_end(engine: BulkEngine, source: Any) -> dict[str, Any]:
    """Run the engine; a hang fails the test at the safety net instead of blocking forever."""
    if not isinstance(source, RowSource):
        source = open_source(source)

    async def go() -> dict[str, Any]:
        try:
            return await asyncio.wait_for(engine.run(source), SAFETY_NET_S)
        finally:
            await engine.hook.aclose()

    return asyncio.run(go())


def aborted(engine: BulkEngine, source: Any) -> BulkRunError:
    with pytest.raises(BulkRunError) as info:
        run_to_end(engine, source)
    return info.value


def assert_accounted(summary: dict[str, Any], rows_read: int | None = None) -> None:
    """Every row read has exactly one outcome, per account as in total."""
    outcomes = summary["outcomes"]
    assert sum(outcomes.values()) == summary["rows"]
    assert sum(sum(c.values()) for c in summary["accounts"].values()) == summary["rows"]
    if rows_read is not None:
        assert summary["rows"] == rows_read


class FailingStore(MemoryLedgerStore):
    """A ledger store whose ``append`` fails ``fail_times`` times (``None`` = always)."""

    def __init__(self, exc: BaseException, fail_times: int | None = None) -> None:
        super().__init__()
        self.exc = exc
        self.fail_times = fail_times
        self.attempts = 0

    def append(self, index: int, chunk: str) -> None:
        self.attempts += 1
        if self.fail_times is None or self.attempts <= self.fail_times:
            raise self.exc
        super().append(index, chunk)


class Ticks:
    """A clock that moves one second each time it is read (deterministic flush cadence)."""

    def __init__(self) -> None:
        self._n = itertools.count()

    def __call__(self) -> float:
        return float(next(self._n))


# -- a worker fails ---------------------------------------------------------------------------


def test_every_worker_failing_ends_the_run_instead_of_hanging() -> None:
    """The reader waits for room that only workers free: dead workers used to hang it forever."""
    calls = collections.Counter[str]()

    async def handler(request: httpx2.Request) -> httpx2.Response:
        await asyncio.sleep(0)  # a request suspends its worker, as real I/O does
        calls["n"] += 1
        if calls["n"] > 20:
            raise RuntimeError("transport bug")  # not an httpx error: escapes the worker
        return ok(request)

    settings = BulkSettings(max_concurrency=4, progress_every_seconds=None)
    error = aborted(make_engine(handler, settings=settings), rows_for(500))
    assert isinstance(error.cause, RuntimeError)
    assert "RuntimeError: transport bug" in str(error)
    assert error.where.startswith("worker")
    summary = error.summary
    assert_accounted(summary)
    assert summary["aborted"]["cause"] == "RuntimeError: transport bug"
    assert summary["outcomes"]["updated"] == 20
    assert summary["outcomes"]["interrupted"] >= 1  # the row whose send blew up
    assert summary["outcomes"]["not_attempted"] >= 1
    assert summary["rows"] < 500  # the reader stopped too
    assert calls["n"] <= 21 + 3 * 4  # at most a few loop turns of sending after the failure


def test_one_worker_failing_is_never_silent_and_stops_the_others() -> None:
    """Three healthy workers used to carry the run to its end and only then raise (no summary)."""
    sent: list[str] = []

    async def handler(request: httpx2.Request) -> httpx2.Response:
        await asyncio.sleep(0)  # a request suspends its worker, as real I/O does
        sent.append(opp_id(request))
        if opp_id(request) == "opp-7":
            raise RuntimeError("bug on one row")
        return ok(request)

    settings = BulkSettings(max_concurrency=4, progress_every_seconds=None)
    error = aborted(make_engine(handler, settings=settings), rows_for(300))
    assert "bug on one row" in str(error)
    # Stopped within a few loop turns (each other worker finishes at most a few sends while the
    # supervisor wakes up), not after the other 292 rows.
    assert len(sent) <= 8 + 3 * 4
    assert_accounted(error.summary)
    assert error.summary["outcomes"]["interrupted"] >= 1


# -- the reader fails ---------------------------------------------------------------------------


def broken_source(good: int) -> RowSource:
    def rows() -> Iterator[RawRow]:
        for i, row in enumerate(rows_for(good)):
            yield RawRow(i, row)
        raise OSError("input file vanished")

    return RowSource(rows(), total=None, description="a file that breaks")


def test_reader_failure_ends_the_run_with_every_read_row_accounted() -> None:
    sent: list[str] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        sent.append(opp_id(request))
        return ok(request)

    error = aborted(make_engine(handler), broken_source(30))
    assert error.where == "reader"
    assert isinstance(error.cause, OSError)
    assert "OSError: input file vanished" in str(error)
    assert_accounted(error.summary, rows_read=30)
    outcomes = error.summary["outcomes"]
    assert outcomes["updated"] == len(sent) - outcomes.get("interrupted", 0)


def test_reader_stuck_waiting_for_room_is_released_when_workers_die() -> None:
    """The window (16 rows here) is far smaller than the input: the reader is parked in
    admission when the last worker dies."""

    def handler(request: httpx2.Request) -> httpx2.Response:
        raise RuntimeError("always")

    settings = BulkSettings(max_concurrency=2, progress_every_seconds=None)
    error = aborted(make_engine(handler, settings=settings), rows_for(100))
    assert_accounted(error.summary)
    assert error.summary["outcomes"]["updated"] == 0
    assert error.summary["outcomes"]["not_attempted"] >= 1


# -- the ledger store fails ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "attempts"),
    [
        (RuntimeError("store down"), 3),  # keeps failing: three tries (backed off), then stop
        (BrokenPipeError(32, "Broken pipe"), 1),  # a closed channel never comes back: stop at once
    ],
    ids=["keeps-failing", "broken-pipe"],
)
def test_ledger_store_that_keeps_failing_fails_the_run(exc: BaseException, attempts: int) -> None:
    store = FailingStore(exc)
    ledger = SuccessLedger(store, flush_rows=10, flush_seconds=5.0, clock=Ticks())
    engine = make_engine(ok, ledger=ledger, settings=BulkSettings(max_concurrency=4))
    error = aborted(engine, rows_for(2000))
    assert error.where == "ledger"
    assert isinstance(error.cause, LedgerStoreError)
    assert type(exc).__name__ in str(error)
    summary = error.summary
    assert_accounted(summary)
    assert summary["rows"] < 2000  # it did not carry on without memory
    assert summary["outcomes"]["updated"] >= 1
    ledger_info = summary["ledger"]
    assert ledger_info["error"] and type(exc).__name__ in ledger_info["error"]
    assert ledger_info["unsaved"] == summary["outcomes"]["updated"]  # nothing was recorded
    # the mid-run attempts, then one last try at the end; never one per success
    assert store.attempts == attempts + 1


def test_ledger_store_failing_once_loses_nothing(caplog: pytest.LogCaptureFixture) -> None:
    store = FailingStore(RuntimeError("blip"), fail_times=1)
    ledger = SuccessLedger(store, flush_rows=10, flush_seconds=5.0, clock=Ticks())
    with caplog.at_level(logging.WARNING, logger="test.bulk"):
        summary = run_to_end(make_engine(ok, ledger=ledger), rows_for(200))
    assert summary["outcomes"]["updated"] == 200
    assert "aborted" not in summary
    assert summary["ledger"]["flush_failures"] == 1
    assert summary["ledger"]["unsaved"] == 0 and summary["ledger"]["error"] is None
    assert any("blip" in r.getMessage() for r in caplog.records)
    # a later try skips every row: the rows pending during the failure were written later
    again = SuccessLedger(store)
    assert again.load() == 200
    sent: list[str] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        sent.append(opp_id(request))
        return ok(request)

    summary = run_to_end(make_engine(handler, ledger=again), rows_for(200))
    assert sent == [] and summary["already_applied"] == 200


def test_ledger_failing_only_at_the_end_says_so(caplog: pytest.LogCaptureFixture) -> None:
    """Nothing left to carry on with: the run's result stands, the lost memory is reported."""
    store = FailingStore(RuntimeError("store down"))
    ledger = SuccessLedger(store)  # defaults: no flush before the end for 30 rows
    with caplog.at_level(logging.WARNING, logger="test.bulk"):
        summary = run_to_end(make_engine(ok, ledger=ledger), rows_for(30))
    assert summary["outcomes"]["updated"] == 30
    assert summary["ledger"]["unsaved"] == 30
    assert "store down" in summary["ledger"]["error"]
    warning = [r.getMessage() for r in caplog.records if "could not record" in r.getMessage()]
    assert warning and "30 applied row(s)" in warning[0]


def test_ledger_flush_backs_off_after_a_failure() -> None:
    """A failed flush is not retried on every later success; its rows are kept and written."""

    class Clock:
        now = 0.0

        def __call__(self) -> float:
            return self.now

    clock = Clock()
    store = FailingStore(RuntimeError("blip"), fail_times=2)
    ledger = SuccessLedger(store, flush_rows=2, flush_seconds=5.0, clock=clock)
    keys = [f"run-{i:032x}" for i in range(60)]
    for k in keys[:20]:
        ledger.record(k)  # never raises
    assert store.attempts == 1  # failed at row 2, then backed off
    clock.now = 5.0
    for k in keys[20:40]:
        ledger.record(k)
    assert store.attempts == 2  # one more try after the back-off, which failed again
    clock.now = 10.0
    ledger.record(keys[40])
    assert store.attempts == 2  # the second back-off is longer (10 s)
    clock.now = 15.0
    ledger.record(keys[41])
    assert store.attempts == 3 and ledger.error is None
    assert ledger.describe()["unsaved"] == 0
    assert len(store.chunks) == 1 and len(store.chunks[0]) == 42 * 16  # nothing lost


# -- the log and the progress reporter fail ------------------------------------------------------


class BrokenFile:
    """The task's log stream after its supervisor died."""

    def __init__(self) -> None:
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")


def test_failing_log_writes_never_raise_into_the_engine() -> None:
    """structlog (as Airflow's task runner uses it) raises on a broken log pipe."""
    stream = BrokenFile()
    logger = structlog.wrap_logger(
        structlog.PrintLogger(file=stream),  # type: ignore[arg-type]
        processors=[structlog.processors.KeyValueRenderer()],
    )
    dead = ACCOUNTS[1]

    def handler(request: httpx2.Request) -> httpx2.Response:
        if request.url.params.get("integrated_account_id") == dead:
            return httpx2.Response(401, json={"statusCode": 401, "message": "reconnect"})
        return ok(request)

    rows = rows_for(100) + rows_for(20, dead)
    settings = BulkSettings(max_concurrency=4, progress_every_rows=1, progress_every_seconds=None)
    engine = make_engine(handler, settings=settings, logger=logger)
    summary = run_to_end(engine, rows)
    assert summary["accounts"][dead] == {"failed": 20}  # the close warning was a log write too
    assert summary["outcomes"]["updated"] == 100
    assert summary["log_write_failures"] == stream.writes
    assert stream.writes >= 100  # every write was tried and failed; none stopped the run


def test_progress_reporter_bug_ends_the_run() -> None:
    """Not a log write: a bug in the reporter itself is an internal failure like any other."""

    class BuggyProgress(ProgressReporter):
        def maybe_report(self, *args: Any, **kwargs: Any) -> str | None:
            raise ZeroDivisionError("bad rate")

    settings = BulkSettings(max_concurrency=2, progress_every_rows=5, progress_every_seconds=None)
    engine = make_engine(ok, settings=settings)
    engine.progress_factory = BuggyProgress
    error = aborted(engine, rows_for(100))
    assert "ZeroDivisionError: bad rate" in str(error)
    assert_accounted(error.summary)
    assert error.summary["rows"] < 100


def test_ticker_bug_ends_the_run() -> None:
    gate = asyncio.Event()  # never set: only the ticker's failure can end this run

    async def handler(request: httpx2.Request) -> httpx2.Response:
        await gate.wait()
        return ok(request)

    class BuggyProgress(ProgressReporter):
        def due(self, done: int) -> bool:
            raise KeyError("ticker")

    settings = BulkSettings(max_concurrency=4, progress_every_seconds=0.001)
    engine = make_engine(handler, settings=settings)
    engine.progress_factory = BuggyProgress
    error = aborted(engine, [r for a in ACCOUNTS for r in rows_for(4, a)])
    assert error.where == "progress ticker"
    assert_accounted(error.summary, rows_read=12)
    # one first request (the pacer's probe) in flight per account, the rest never sent
    assert error.summary["outcomes"]["interrupted"] == 3
    assert error.summary["outcomes"]["not_attempted"] == 9


# -- the process is orphaned ---------------------------------------------------------------------


def test_watch_ends_an_orphaned_run() -> None:
    """The parent (Airflow's supervisor) is gone: stop instead of idling or running unobserved."""
    gate = asyncio.Event()  # never set: requests hang, so only the watch can end the run
    seen = collections.Counter[str]()

    async def handler(request: httpx2.Request) -> httpx2.Response:
        seen["n"] += 1
        await gate.wait()
        return ok(request)

    def watch() -> str | None:
        return "the task's supervisor (pid 4242) is gone" if seen["n"] >= 3 else None

    settings = BulkSettings(max_concurrency=4, progress_every_seconds=None)
    engine = make_engine(handler, settings=settings)
    engine.watch = watch
    engine.watch_every = 0.001
    interleaved = [
        r for group in zip(*(rows_for(20, a) for a in ACCOUNTS), strict=True) for r in group
    ]
    error = aborted(engine, interleaved)
    assert error.where == "watch"
    assert "supervisor (pid 4242) is gone" in str(error)
    assert_accounted(error.summary)
    assert error.summary["outcomes"]["interrupted"] == 3  # one probe in flight per account
