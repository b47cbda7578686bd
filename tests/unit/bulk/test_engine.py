"""The bulk engine against httpx2.MockTransport: outcomes, retries, isolation, ordering."""

from __future__ import annotations

import collections
import json
import logging
import threading
from typing import Any

import httpx2
import pytest

from tests.unit.bulk.conftest import ACCOUNTS, account_of, make_engine, opp_id, rows_for, run
from truto_airflow.bulk import Outcome, RowItem, StepDecision
from truto_airflow.bulk.engine import BulkSettings
from truto_airflow.bulk.ledger import MemoryLedgerStore, SuccessLedger
from truto_airflow.bulk.rejects import RejectedRows


def ok(request: httpx2.Request) -> httpx2.Response:
    return httpx2.Response(200, json={"id": opp_id(request)})


def test_every_row_gets_exactly_one_outcome() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        if opp_id(request) in {"opp-3", "opp-7"}:
            return httpx2.Response(
                422,
                json={
                    "statusCode": 422,
                    "error": "Unprocessable Entity",
                    "message": "amount too large",
                    "truto_is_remote_error": True,
                    "truto_error_insight": {"remote_error": {"value": "x"}},
                },
            )
        return ok(request)

    rows: list[Any] = rows_for(10)
    rows += [{"id": "bad", "body": {"amout": 1}}, {"id": "x", "amount": 3}, "nope"]
    summary = run(make_engine(handler), rows)
    assert summary["rows"] == 13
    assert summary["outcomes"] == {"updated": 8, "failed": 2, "invalid": 3}
    assert summary["status_codes"] == {"200": 8, "422": 2}
    assert summary["requests_sent"] == 10
    rejected = summary["rejected"]
    assert rejected["count"] == 5
    by_row = {r["row"]: r for r in rejected["rows"]}
    assert by_row[3]["message"] == "amount too large"
    assert by_row[3]["is_remote_error"] is True
    assert by_row[3]["error_insight"] == {"remote_error": {"value": "x"}}
    assert "did you mean 'amount'" in by_row[10]["message"]
    assert "put opportunity fields in 'body'" in by_row[11]["message"]
    assert all("body" not in r for r in rejected["rows"])  # bodies stay out of XCom


def test_transient_errors_are_retried_with_the_same_key() -> None:
    seen: dict[str, list[str]] = collections.defaultdict(list)

    def handler(request: httpx2.Request) -> httpx2.Response:
        oid = opp_id(request)
        seen[oid].append(request.headers["idempotency-key"])
        if oid == "opp-1" and len(seen[oid]) < 3:
            return httpx2.Response(502, json={"statusCode": 502, "message": "bad gateway"})
        if oid == "opp-2" and len(seen[oid]) == 1:
            raise httpx2.ConnectError("refused", request=request)
        return ok(request)

    summary = run(make_engine(handler), rows_for(4))
    assert summary["outcomes"]["updated"] == 4
    assert summary["retries"] == 3
    assert summary["network_errors"] == 1
    assert summary["responses"]["502"] == 2
    assert len(seen["opp-1"]) == 3 and len(set(seen["opp-1"])) == 1
    assert len(set(seen["opp-2"])) == 1


def test_retries_run_out() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(500, json={"statusCode": 500, "message": "boom"})

    summary = run(make_engine(handler, max_retries=2), rows_for(3))
    assert summary["outcomes"]["failed"] == 3
    assert summary["requests_sent"] == 9
    assert summary["rejected"]["rows"][0]["attempts"] == 3


def test_dead_and_throttled_accounts_do_not_stall_others() -> None:
    dead, stormy, healthy = ACCOUNTS
    sent: collections.Counter[str] = collections.Counter()

    def handler(request: httpx2.Request) -> httpx2.Response:
        account = account_of(request)
        sent[account] += 1
        if account == dead:
            return httpx2.Response(401, json={"statusCode": 401, "message": "reconnect"})
        if account == stormy:
            return httpx2.Response(429, headers={"retry-after": "0.05"}, json={"message": "slow"})
        return ok(request)

    rows = rows_for(30, dead) + rows_for(30, stormy) + rows_for(200, healthy)
    rows.sort(key=lambda r: r["id"])  # interleave the accounts
    settings = BulkSettings(
        max_concurrency=8, max_throttle_seconds=0.3, progress_every_seconds=None
    )
    summary = run(make_engine(handler, settings=settings), rows)
    accounts = summary["accounts"]
    assert accounts[healthy] == {"updated": 200}
    assert accounts[dead] == {"failed": 30}
    assert accounts[stormy] == {"failed": 30}
    assert sent[dead] == 1  # the first 401 closed the account; the rest were never sent
    assert summary["not_sent"] >= 29 + 25
    messages = {r["integrated_account_id"]: r["message"] for r in summary["rejected"]["rows"]}
    assert "answered 401" in messages.get(dead, "") or "reconnect" in messages.get(dead, "")


def test_rows_for_the_same_opportunity_apply_in_input_order() -> None:
    applied: list[int] = []
    lock = threading.Lock()

    async def handler(request: httpx2.Request) -> httpx2.Response:
        import asyncio

        body = json.loads(request.content)
        await asyncio.sleep(0.01 if body["amount"] % 2 == 0 else 0.001)
        with lock:
            applied.append(body["amount"])
        return ok(request)

    rows = [{"id": "same", "body": {"amount": n}} for n in range(12)]
    summary = run(make_engine(handler), rows)
    assert summary["outcomes"]["updated"] == 12
    assert applied == list(range(12))


def test_row_step_can_settle_a_row_without_sending() -> None:
    class SkipOdd:
        async def run(self, item: RowItem) -> RowItem | StepDecision:
            if int(item.opportunity_id.split("-")[1]) % 2:
                return StepDecision(Outcome.INVALID, "odd rows are not allowed", "preflight")
            return item

    calls: list[str] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        calls.append(opp_id(request))
        return ok(request)

    summary = run(make_engine(handler, steps=[SkipOdd()]), rows_for(6))
    assert summary["outcomes"] == {"updated": 3, "failed": 0, "invalid": 3}
    assert sorted(calls) == ["opp-0", "opp-2", "opp-4"]


def test_a_pre_0_2_plan_step_still_works_with_a_deprecation_warning() -> None:
    with pytest.warns(DeprecationWarning, match="bulk.plan.PlanDecision is deprecated"):
        from truto_airflow.bulk.plan import PlanDecision  # the old name, same class

    class OldStyle:  # 0.1's RowPlanner: ``plan``, not ``run``
        async def plan(self, item: RowItem) -> RowItem | StepDecision:
            return PlanDecision(Outcome.INVALID, "refused by the old step", "preflight")

    with pytest.warns(DeprecationWarning, match=r"OldStyle\.plan\(item\) is deprecated"):
        engine = make_engine(ok, steps=[OldStyle()])
    summary = run(engine, rows_for(2))
    assert summary["outcomes"]["invalid"] == 2


def test_a_failing_row_step_settles_its_row_and_names_the_users_class() -> None:
    class Broken:
        async def run(self, item: RowItem) -> RowItem | StepDecision:
            raise RuntimeError("boom")

    sink = RejectedRows(inline_limit=5)
    summary = run(make_engine(ok, steps=[Broken()], rejected=sink), rows_for(2))
    assert summary["outcomes"]["failed"] == 2
    assert {r["error"] for r in sink.rows} == {"plan_error"}
    assert all("row step Broken failed: RuntimeError: boom" in r["message"] for r in sink.rows)


def test_ledger_skips_rows_applied_by_an_earlier_try() -> None:
    store = MemoryLedgerStore()
    first_try: list[str] = []

    def flaky(request: httpx2.Request) -> httpx2.Response:
        first_try.append(opp_id(request))
        if opp_id(request) in {"opp-1", "opp-4"}:
            return httpx2.Response(500, json={"message": "down"})
        return ok(request)

    summary = run(make_engine(flaky, ledger=SuccessLedger(store), max_retries=0), rows_for(6))
    assert summary["outcomes"]["failed"] == 2
    second_try: list[str] = []

    def healthy(request: httpx2.Request) -> httpx2.Response:
        second_try.append(opp_id(request))
        return ok(request)

    ledger = SuccessLedger(store)
    assert ledger.load() == 4
    summary = run(make_engine(healthy, ledger=ledger), rows_for(6))
    assert sorted(second_try) == ["opp-1", "opp-4"]
    assert summary["outcomes"]["updated"] == 6
    assert summary["already_applied"] == 4
    # A changed body is a different write: it is sent again.
    third: list[str] = []

    def record(request: httpx2.Request) -> httpx2.Response:
        third.append(opp_id(request))
        return ok(request)

    ledger = SuccessLedger(store)
    ledger.load()
    run(make_engine(record, ledger=ledger), rows_for(6, currency="EUR"))
    assert len(third) == 6


def test_throttled_account_spills_to_disk_and_still_completes() -> None:
    hits = collections.Counter[str]()

    def handler(request: httpx2.Request) -> httpx2.Response:
        account = account_of(request)
        hits[account] += 1
        if account == ACCOUNTS[0] and hits[account] == 2:
            return httpx2.Response(429, headers={"retry-after": "1"}, json={"message": "wait"})
        return ok(request)

    rows = rows_for(300, ACCOUNTS[0]) + rows_for(50, ACCOUNTS[1])
    settings = BulkSettings(max_concurrency=4, progress_every_seconds=None)
    engine = make_engine(handler, settings=settings)
    summary = run(engine, rows)
    assert summary["outcomes"]["updated"] == 350
    assert summary["rate_limited"] == 1
    assert summary["spilled_rows"] > 100
    assert engine._spill_dir is not None and not engine._spill_dir.exists()


def test_progress_lines(caplog: pytest.LogCaptureFixture) -> None:
    settings = BulkSettings(max_concurrency=4, progress_every_rows=10, progress_every_seconds=None)
    with caplog.at_level(logging.INFO, logger="test.bulk"):
        run(make_engine(ok, settings=settings), rows_for(35))
    lines = [r.getMessage() for r in caplog.records if "Bulk progress" in r.getMessage()]
    assert len(lines) == 4  # at 10, 20, 30 and the final line
    assert "10/35 rows (28.6%)" in lines[0]
    assert "rows/s, ETA" in lines[0]
    assert "35/35 rows (100.0%)" in lines[-1]


def test_the_reader_waits_for_a_batch_of_room_within_the_memory_bound() -> None:
    """When answers are slower than reading, the reader parks for room: it is woken once a batch
    of rows has settled (it used to be woken, admit one row and park again for every row),
    and never holds more than the window, nor more than an account's queue, in memory."""
    import asyncio

    rows = 600
    high = {"in_memory": 0, "queued": 0}

    async def slow(request: httpx2.Request) -> httpx2.Response:
        high["in_memory"] = max(high["in_memory"], engine._in_memory)
        high["queued"] = max(high["queued"], *(len(a.queue) for a in engine._accounts.values()))
        await asyncio.sleep(0.005)
        return ok(request)

    engine = make_engine(
        slow, settings=BulkSettings(max_concurrency=8, progress_every_seconds=None)
    )
    waits = 0
    room_wait = engine._room.wait

    async def counted(timeout: float | None) -> None:
        nonlocal waits
        waits += 1
        await room_wait(timeout)

    engine._room.wait = counted  # type: ignore[method-assign]
    summary = run(engine, rows_for(rows, ACCOUNTS[0]))
    assert summary["outcomes"] == {"updated": rows, "failed": 0, "invalid": 0}
    assert high["queued"] <= engine.per_account and high["in_memory"] <= engine.window
    assert engine._room.batch == 4
    assert 0 < waits <= rows // engine._room.batch + 10  # woken per row: 228 waits here
