"""PATCH throughput of the Truto emulator (it must never be a benchmark's bottleneck).

Starts the emulator as a subprocess with zero latency and no faults, then sends ``--requests``
PATCHes at ``--concurrency`` and prints requests per second, twice: from a raw keep-alive HTTP/1.1
client (pre-serialised requests, responses framed by Content-Length: close to free, so the figure
is the server's) and from an async httpx2 client (a real client's view; on a 2-core machine the
client process, not the server, is then what saturates a core).
Run: ``.venv/bin/python -m benchmarks.emulator_throughput [--requests 4000] [--concurrency 32]``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time
from collections.abc import Coroutine
from typing import Any
from urllib.parse import quote

import httpx2

from truto_airflow.emulator import EmulatorConfig, run_emulator


async def _run(
    base_url: str, token: str, account: str, ids: list[str], total: int, conc: int
) -> float:
    counter = itertools.count()
    # Pre-built URLs and bodies: the point is to measure the server, not client-side encoding.
    urls = [
        f"{base_url}/unified/crm/opportunities/{quote(i, safe='')}?integrated_account_id={account}"
        for i in ids
    ]
    bodies = [json.dumps({"amount": n, "name": f"Deal {n}"}).encode() for n in range(100)]
    limits = httpx2.Limits(max_connections=conc, max_keepalive_connections=conc)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    async with httpx2.AsyncClient(base_url=base_url, headers=headers, limits=limits) as client:

        async def worker(count: int) -> None:
            while (n := next(counter)) < count:
                response = await client.patch(urls[n % len(urls)], content=bodies[n % 100])
                if response.status_code != 200:
                    raise RuntimeError(f"unexpected {response.status_code}: {response.text}")

        await asyncio.gather(*(worker(200) for _ in range(conc)))  # open the connections
        counter = itertools.count()
        started = time.perf_counter()
        await asyncio.gather(*(worker(total) for _ in range(conc)))
        return total / (time.perf_counter() - started)


async def _raw(
    base_url: str, token: str, account: str, ids: list[str], total: int, conc: int
) -> float:
    """Minimal-overhead client: one asyncio stream per connection, requests pre-serialised."""
    url = httpx2.URL(base_url)
    host, port = url.host, url.port or 80
    requests = []
    for n, opp_id in enumerate(ids):
        body = json.dumps({"amount": n, "name": f"Deal {n}"}).encode()
        path = (
            f"/unified/crm/opportunities/{quote(opp_id, safe='')}?integrated_account_id={account}"
        )
        head = (
            f"PATCH {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        requests.append(head.encode() + body)
    counter = itertools.count()

    async def connection(count: int) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while (n := next(counter)) < count:
                writer.write(requests[n % len(requests)])
                status_line = await reader.readline()
                if b" 200 " not in status_line:
                    raise RuntimeError(f"unexpected answer: {status_line!r}")
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
        finally:
            writer.close()

    await asyncio.gather(*(connection(200) for _ in range(conc)))  # warm-up
    counter = itertools.count()
    started = time.perf_counter()
    await asyncio.gather(*(connection(total) for _ in range(conc)))
    return total / (time.perf_counter() - started)


def _asyncio_run(coro: Coroutine[Any, Any, float]) -> float:
    """The client loop is the bottleneck on small machines: use uvloop when installed."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    with run_emulator(EmulatorConfig(opportunities=1000), subprocess=True) as emu:
        account = emu.accounts["hubspot"]
        ids = emu.opportunity_ids(account)
        raw = _asyncio_run(
            _raw(emu.base_url, emu.token, account, ids, args.requests, args.concurrency)
        )
        rate = _asyncio_run(
            _run(emu.base_url, emu.token, account, ids, args.requests, args.concurrency)
        )
        applied = emu.apply_count(account, ids[0])
    print(
        f"emulator PATCH throughput, raw HTTP/1.1 client: {raw:,.0f} req/s; "
        f"httpx2 client: {rate:,.0f} req/s "
        f"({args.requests} requests each, concurrency {args.concurrency}; "
        f"{applied} writes to {ids[0]})"
    )


if __name__ == "__main__":
    main()
