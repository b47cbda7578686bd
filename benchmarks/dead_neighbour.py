"""A healthy account's bulk duration with and without a network-dead neighbour, on loopback.

``python -m benchmarks.dead_neighbour [--rows N] [--latency-ms L]``

A tiny HTTP/1.1 server in a subprocess answers the healthy account's PATCHes (200 after L ms) and
drops every connection that carries the dead account's requests (reads the request, closes the
socket: the client sees "server disconnected"). The bulk engine (aiohttp transport, the hook's
default retry policy, concurrency 32) runs N healthy rows alone, then the same N interleaved with
N rows of the dead account. The figure is the healthy account's span: first to last healthy
answer, as the server saw them. Run it from any checkout to compare before/after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
import time
from typing import Any

HEALTHY = "62f44730-dd91-461e-bd6a-aedd9e0ad79d"
DEAD = "1b9f0c3e-7d44-4a8a-9c5e-3f2a1b0c9d8e"


async def _serve(sock: socket.socket, latency: float, log_path: str) -> None:
    times: list[float] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                if length:
                    await reader.readexactly(length)
                if DEAD.encode() in head.split(b"\r\n", 1)[0]:
                    writer.close()  # dropped: no answer at all
                    return
                await asyncio.sleep(latency)
                body = b'{"id": "x", "amount": 1}'
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    b"content-length: %d\r\n\r\n%s" % (len(body), body)
                )
                await writer.drain()
                times.append(time.monotonic())
                with open(log_path, "w") as fh:
                    json.dump([times[0], times[-1], len(times)], fh)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, sock=sock)
    async with server:
        await server.serve_forever()


def serve(fd: int, latency: float, log_path: str) -> None:
    sock = socket.socket(fileno=fd)
    asyncio.run(_serve(sock, latency, log_path))


def run_engine(base_url: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    os.environ["AIRFLOW_CONN_TRUTO_DEFAULT"] = json.dumps(
        {"conn_type": "truto", "host": base_url, "password": "bench-token-0123456789"}
    )
    from truto_airflow.bulk.engine import BulkEngine, BulkSettings
    from truto_airflow.bulk.prepare import RowPreparer, RunIdentity
    from truto_airflow.bulk.rows import open_source
    from truto_airflow.bulk.transport import AiohttpTransport
    from truto_airflow.hooks.truto import TrutoHook

    hook = TrutoHook(async_transport=AiohttpTransport(max_connections=32))
    engine = BulkEngine(
        hook,
        RowPreparer(hook=hook, identity=RunIdentity("bench", "dead_neighbour", "run")),
        settings=BulkSettings(max_concurrency=32, progress_every_seconds=None),
        logger=logging.getLogger("bench"),
    )

    async def go() -> dict[str, Any]:
        try:
            return await engine.run(open_source(rows))
        finally:
            await hook.aclose()

    return asyncio.run(go())


def scenario(rows_n: int, latency: float, with_dead: bool) -> dict[str, Any]:
    import tempfile

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    port = sock.getsockname()[1]
    fd, log_path = tempfile.mkstemp(prefix="dead-neighbour-", suffix=".json")
    os.close(fd)
    child = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.dead_neighbour", "--serve", str(sock.fileno())],
        pass_fds=[sock.fileno()],
        env={**os.environ, "DN_LATENCY": str(latency), "DN_LOG": log_path},
    )
    try:
        healthy = [
            {"id": f"h-{i}", "body": {"amount": i}, "integrated_account_id": HEALTHY}
            for i in range(rows_n)
        ]
        rows = healthy
        if with_dead:
            dead = [
                {"id": f"d-{i}", "body": {"amount": i}, "integrated_account_id": DEAD}
                for i in range(rows_n)
            ]
            rows = [r for pair in zip(dead, healthy, strict=True) for r in pair]
        started = time.monotonic()
        summary = run_engine(f"http://127.0.0.1:{port}", rows)
        total = time.monotonic() - started
        with open(log_path) as fh:
            first, last, count = json.load(fh)  # the server rewrites it after each answer
        return {
            "healthy_span_s": round(last - first, 2),
            "healthy_answers": count,
            "run_s": round(total, 2),
            "accounts": summary["accounts"],
            "requests_sent": summary["requests_sent"],
        }
    finally:
        child.terminate()
        child.wait()
        sock.close()
        if os.path.exists(log_path):
            os.unlink(log_path)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--latency-ms", type=float, default=5.0)
    parser.add_argument("--serve", type=int)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve, float(os.environ["DN_LATENCY"]), os.environ["DN_LOG"])
        return
    latency = args.latency_ms / 1000
    alone = scenario(args.rows, latency, with_dead=False)
    print("healthy alone:          ", json.dumps(alone))
    beside = scenario(args.rows, latency, with_dead=True)
    print("healthy beside the dead:", json.dumps(beside))
    ratio = beside["healthy_span_s"] / max(alone["healthy_span_s"], 1e-9)
    print(f"slowdown of the healthy account: {ratio:.1f}x")


if __name__ == "__main__":
    main()
