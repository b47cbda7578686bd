"""Baseline clients measured against the same emulator: (b) sequential httpx2, (c) the Truto
Python SDK's pattern, (f) the client ceiling (bare aiohttp, one shared connector).

truto-python-sdk needs Python >= 3.12 and this environment runs 3.11, so (c) is a faithful
equivalent of its ``UnifiedApi.update``: a new ``aiohttp.ClientSession`` per call, the query
string built by hand, ``raise_for_status()`` before reading the body, no retries, no timeout.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import uuid
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import httpx2


@dataclass
class Measured:
    rows: int
    seconds: float
    latencies: list[float]
    errors: int = 0

    def as_dict(self) -> dict[str, Any]:
        lat = sorted(self.latencies)

        def pct(q: float) -> float | None:
            if not lat:
                return None
            return round(1000 * lat[min(len(lat) - 1, int(q / 100 * len(lat)))], 2)

        return {
            "rows": self.rows,
            "seconds": round(self.seconds, 3),
            "rows_per_second": round(self.rows / self.seconds, 1) if self.seconds else 0.0,
            "p50_ms": pct(50),
            "p99_ms": pct(99),
            "mean_ms": round(1000 * statistics.fmean(lat), 2) if lat else None,
            "errors": self.errors,
        }


def _url(base: str, account: str, opp: str) -> str:
    return f"{base}/unified/crm/opportunities/{quote(opp, safe='')}?integrated_account_id={account}"


def sequential_httpx2(
    base: str, token: str, account: str, ids: Sequence[str], body: dict[str, Any]
) -> Measured:
    """(b) What a plain script does: one pooled client, one PATCH after another."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    latencies: list[float] = []
    errors = 0
    with httpx2.Client(headers=headers, timeout=30.0) as client:
        started = time.perf_counter()
        for opp in ids:
            t0 = time.perf_counter()
            response = client.patch(_url(base, account, opp), content=json.dumps(body))
            latencies.append(time.perf_counter() - t0)
            errors += response.status_code != 200
        return Measured(len(ids), time.perf_counter() - started, latencies, errors)


async def _sdk_update(base: str, token: str, account: str, opp: str, data: Any) -> Any:
    # truto_api.py: a session per request; raise_for_status() drops the JSON error body.
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/json",
        "Accept": "application/json",
    }
    url = f"{base}/unified/crm/opportunities/{opp}?integrated_account_id={account}"
    async with (
        aiohttp.ClientSession() as session,
        session.patch(url, headers=headers, json=data) as response,
    ):
        response.raise_for_status()
        return await response.json()


def sdk_pattern(
    base: str,
    token: str,
    account: str,
    ids: Sequence[str],
    body: dict[str, Any],
    concurrency: int,
) -> Measured:
    """(c) The SDK's ``unified_api.update`` per row, ``concurrency`` at a time (gather)."""

    async def main() -> Measured:
        sem = asyncio.Semaphore(concurrency)
        latencies: list[float] = []
        errors = 0

        async def one(opp: str) -> None:
            nonlocal errors
            async with sem:
                t0 = time.perf_counter()
                try:
                    await _sdk_update(base, token, account, opp, body)
                except aiohttp.ClientError:
                    errors += 1
                latencies.append(time.perf_counter() - t0)

        started = time.perf_counter()
        await asyncio.gather(*(one(o) for o in ids))
        return Measured(len(ids), time.perf_counter() - started, latencies, errors)

    return asyncio.run(main())


def _run_like_the_operator(coro: Coroutine[Any, Any, Measured]) -> Measured:
    """The bulk operator runs on uvloop when installed: the ceiling gets the same loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


@dataclass
class CeilingRequests:
    """Everything (f) sends, built before the clock starts (:func:`ceiling_requests`)."""

    urls: list[str]
    keys: list[dict[str, str]]
    payload: bytes
    headers: dict[str, str]


def ceiling_requests(
    base: str, token: str, account: str, ids: Sequence[str], body: dict[str, Any]
) -> CeilingRequests:
    """The operator's request for each row, so the server does the same work for both: the same
    default header set, the same compact JSON body, and a distinct ``Idempotency-Key`` per row
    (a keyed write costs the server more: Truto and the emulator remember it for replays)."""
    return CeilingRequests(
        urls=[_url(base, account, o) for o in ids],
        keys=[{"Idempotency-Key": f"bench-ceiling-{uuid.uuid4()}"} for _ in ids],
        payload=json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode(),
        headers={
            "Authorization": f"Bearer {token}",
            "Accept": "application/json",
            "Content-Type": "application/json",
            "User-Agent": "truto-airflow/bench",
        },
    )


def aiohttp_ceiling(requests: CeilingRequests, concurrency: int) -> Measured:
    """(f) Bare aiohttp, one session, nothing done per row but sending the request (the
    ceiling); the requests are built beforehand (:func:`ceiling_requests`)."""
    urls, keys, payload = requests.urls, requests.keys, requests.payload

    async def main() -> Measured:
        connector = aiohttp.TCPConnector(limit=concurrency)
        latencies: list[float] = []
        errors = 0
        async with aiohttp.ClientSession(connector=connector, headers=requests.headers) as session:
            queue = zip(urls, keys, strict=True)

            async def worker() -> None:
                nonlocal errors
                for url, key in queue:
                    t0 = time.perf_counter()
                    async with session.patch(url, data=payload, headers=key) as response:
                        await response.read()
                        errors += response.status != 200
                    latencies.append(time.perf_counter() - t0)

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return Measured(len(urls), time.perf_counter() - started, latencies, errors)

    return _run_like_the_operator(main())
