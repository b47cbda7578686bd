"""Shared helpers for the bulk engine tests: a hook on httpx2.MockTransport."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

import httpx2
import pytest

from truto_airflow.bulk.engine import BulkEngine, BulkSettings
from truto_airflow.bulk.ledger import MemoryLedgerStore, SuccessLedger
from truto_airflow.bulk.prepare import RowPreparer, RunIdentity
from truto_airflow.bulk.rejects import RejectedRows
from truto_airflow.bulk.rows import open_source
from truto_airflow.hooks.truto import TrutoHook
from truto_airflow.retry import RetryPolicy

ACCOUNTS = [
    "62f44730-dd91-461e-bd6a-aedd9e0ad79d",
    "1b9f0c3e-7d44-4a8a-9c5e-3f2a1b0c9d8e",
    "a3c5e7f9-1b2d-4f6a-8c0e-2d4f6a8c0e1b",
]


def opp_id(request: httpx2.Request) -> str:
    return request.url.path.rsplit("/", 1)[-1]


def account_of(request: httpx2.Request) -> str:
    return str(request.url.params.get("integrated_account_id"))


Handler = Callable[[httpx2.Request], Any]


def make_engine(
    handler: Handler,
    *,
    settings: BulkSettings | None = None,
    ledger: SuccessLedger | None = None,
    max_retries: int = 3,
    steps: Sequence[Any] = (),
    logger: Any = None,
    rejected: RejectedRows | None = None,
) -> BulkEngine:
    hook = TrutoHook(
        async_transport=httpx2.MockTransport(handler),
        retry_policy=RetryPolicy(max_retries=max_retries, backoff_base=0.001, max_wait=1.0),
    )
    preparer = RowPreparer(hook=hook, identity=RunIdentity("dag", "task", "run-1"))
    return BulkEngine(
        hook,
        preparer,
        settings=settings or BulkSettings(max_concurrency=8, progress_every_seconds=None),
        ledger=ledger or SuccessLedger(MemoryLedgerStore()),
        steps=steps,
        logger=logger or logging.getLogger("test.bulk"),
        rejected=rejected,
    )


def run(engine: BulkEngine, rows: Any) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        try:
            return await engine.run(open_source(rows))
        finally:
            await engine.hook.aclose()

    return asyncio.run(go())


def rows_for(n: int, account: str | None = None, **body: Any) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        row: dict[str, Any] = {"id": f"opp-{i}", "body": {"amount": i, **body}}
        if account:
            row["integrated_account_id"] = account
        out.append(row)
    return out


@pytest.fixture(autouse=True)
def _conn(truto_conn: str) -> str:
    return truto_conn
