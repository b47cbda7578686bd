"""An account whose every connection is refused or dropped does not stall the healthy ones.

After a first request gets no HTTP answer, the account is probed one request at a time (its other
rows wait in the spill file, not in the window); after the bounded number of silent rounds it is
closed like a 401/403 account and its remaining rows fail unsent. Structure, not timing.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any

import httpx2
import pytest

from tests.unit.bulk.conftest import ACCOUNTS, account_of, make_engine, opp_id, rows_for, run
from truto_airflow.bulk.engine import BulkSettings

DEAD, HEALTHY, _ = ACCOUNTS


def interleave(*groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for batch in zip(*groups, strict=False):
        out.extend(batch)
    return out


@pytest.mark.parametrize(
    "fault",
    [httpx2.ConnectError("connection refused"), httpx2.RemoteProtocolError("server disconnected")],
    ids=["refused", "dropped"],
)
def test_dead_account_is_probed_one_at_a_time_then_closed(fault: Exception) -> None:
    in_flight = collections.Counter[str]()
    peak = collections.Counter[str]()
    sent = collections.Counter[str]()

    async def handler(request: httpx2.Request) -> httpx2.Response:
        account = account_of(request)
        sent[account] += 1
        in_flight[account] += 1
        peak[account] = max(peak[account], in_flight[account])
        try:
            await asyncio.sleep(0.001)
            if account == DEAD:
                raise fault
            return httpx2.Response(200, json={"id": opp_id(request)})
        finally:
            in_flight[account] -= 1

    rows = interleave(rows_for(200, HEALTHY), rows_for(200, DEAD))
    settings = BulkSettings(max_concurrency=8, progress_every_seconds=None)
    engine = make_engine(handler, settings=settings, max_retries=3)
    summary = run(engine, rows)
    assert summary["accounts"][HEALTHY] == {"updated": 200}
    assert summary["accounts"][DEAD] == {"failed": 200}
    assert peak[DEAD] == 1  # never more than one slot
    assert sent[DEAD] == 4  # one probe per round (max_retries=3: 4 rounds), then closed
    assert summary["not_sent"] >= 200 - 4
    messages = [r["message"] for r in summary["rejected"]["rows"]]
    assert any("got no HTTP answer to 4 attempts in a row" in m for m in messages)
    assert all(r["status_code"] is None for r in summary["rejected"]["rows"])


def test_one_dropped_connection_does_not_close_an_answering_account() -> None:
    calls = collections.Counter[str]()

    def handler(request: httpx2.Request) -> httpx2.Response:
        oid = opp_id(request)
        calls[oid] += 1
        if calls[oid] == 1 and int(oid.split("-")[1]) % 10 == 0:
            raise httpx2.ReadError("connection reset")
        return httpx2.Response(200, json={"id": oid})

    summary = run(make_engine(handler, max_retries=0), rows_for(100, HEALTHY))
    # max_retries=0: each dropped row fails, but the account answers between drops, so it stays
    # open and every other row is applied.
    assert summary["outcomes"] == {"updated": 90, "failed": 10, "invalid": 0}
    assert summary["not_sent"] == 0


def test_a_hanging_account_does_not_hold_the_reader() -> None:
    """The dead account's first request hangs; every healthy row is still applied meanwhile."""
    gate: dict[str, asyncio.Event] = {}
    healthy_done = 0
    opened_by_healthy_rows: list[bool] = []

    async def handler(request: httpx2.Request) -> httpx2.Response:
        nonlocal healthy_done
        if account_of(request) == DEAD:
            event = gate.setdefault("open", asyncio.Event())
            try:  # bounded only so a regression fails instead of hanging the suite
                await asyncio.wait_for(event.wait(), 20)
            except asyncio.TimeoutError:
                opened_by_healthy_rows.append(False)
                event.set()
            raise httpx2.ReadTimeout("timed out")
        healthy_done += 1
        if healthy_done == 300:
            gate.setdefault("open", asyncio.Event()).set()  # only once all healthy rows are in
        return httpx2.Response(200, json={"id": opp_id(request)})

    rows = rows_for(100, DEAD) + rows_for(300, HEALTHY)  # dead rows first: they fill its queue
    settings = BulkSettings(max_concurrency=4, progress_every_seconds=None)
    summary = run(make_engine(handler, settings=settings, max_retries=1), rows)
    assert opened_by_healthy_rows == []  # every healthy row was applied while it hung
    assert summary["accounts"][HEALTHY] == {"updated": 300}
    assert summary["accounts"][DEAD] == {"failed": 100}
