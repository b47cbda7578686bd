"""Both wires read answers the same way: the aiohttp fast path and httpx2.

The bulk engine reads its answers from :class:`~truto_airflow.bulk.transport.Answer`: built
from aiohttp's response on the fast path (no httpx2 response object unless the answer becomes
an error), or from an httpx2 response otherwise. Every rule that reads an answer (a 2xx must be
Truto's JSON object, 429 wait hints, rate-limit budgets, retries, closed accounts, redaction of
an echoed token) must give the same row outcome and the same pacer state on both. Each case is
a script of raw answers; the fast path gets them over a loopback socket, byte for byte, and the
httpx2 path from ``MockTransport``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx2
import pytest

from tests.conftest import TOKEN, truto_conn_json
from truto_airflow.bulk.engine import BulkEngine, BulkSettings
from truto_airflow.bulk.ledger import MemoryLedgerStore, SuccessLedger
from truto_airflow.bulk.prepare import RowPreparer, RunIdentity
from truto_airflow.bulk.rows import open_source
from truto_airflow.bulk.transport import AiohttpTransport, Answer
from truto_airflow.hooks.truto import TrutoHook
from truto_airflow.retry import RetryPolicy

pytest.importorskip("aiohttp")

JSON = [("Content-Type", "application/json")]
OK = (200, JSON, b'{"id": "1", "amount": 1}')
RATE_LIMIT = [
    ("ratelimit-limit", "10;w=60"),
    ("ratelimit-remaining", "7"),
    ("ratelimit-reset", "30"),
]
Script = list[tuple[int, list[tuple[str, str]], bytes]]

CASES: dict[str, Script] = {
    "object": [OK],
    "no-content": [(204, [], b"")],
    "html-page": [(200, [("Content-Type", "text/html")], b"<html>Sign in</html>")],
    "json-list": [(200, JSON, b"[]")],
    "json-null": [(200, JSON, b"null")],
    "truncated": [(200, JSON, b'{"id": "1", "am')],
    "empty-200": [(200, JSON, b"")],
    "not-utf8": [(200, JSON, b'{"id": "\xff\xfe"}')],
    "raw-format-anything": [(200, [("Content-Type", "text/plain")], b"crm says ok")],
    "429-then-ok": [(429, [*JSON, ("Retry-After", "0")], b'{"message": "slow down"}'), OK],
    "429-repeated-hint": [
        (429, [*JSON, ("Retry-After", "0"), ("Retry-After", "3600")], b"{}"),
        OK,
    ],
    "budget": [(200, [*JSON, *RATE_LIMIT], b"{}")],
    "budget-repeated": [
        (200, [*JSON, ("ratelimit-remaining", "5"), ("RateLimit-Remaining", "6")], b"{}")
    ],
    "500-echoes-token": [(500, JSON, b'{"message": "bad token ' + TOKEN.encode() + b'"}')] * 3,
    "502-then-ok": [(502, [("Content-Type", "text/plain")], b"bad gateway"), OK],
    "401-closes": [(401, JSON, b'{"message": "Unauthorized", "error": "unauthorized"}')],
    "422-insight": [
        (
            422,
            JSON,
            b'{"message": "amount must be positive", "truto_error_insight": {"field": "amount"},'
            b' "truto_is_remote_error": true}',
        )
    ],
}


class ScriptedServer:
    """Loopback HTTP/1.1: answers each request with the script's next raw answer."""

    def __init__(self, script: Script) -> None:
        self.script = list(script)
        self.seen = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                status, headers, body = self.script[min(self.seen, len(self.script) - 1)]
                self.seen += 1
                lines = [f"HTTP/1.1 {status} X".encode()]
                lines += [f"{k}: {v}".encode() for k, v in headers]
                lines.append(b"Content-Length: %d" % len(body))
                writer.write(b"\r\n".join(lines) + b"\r\n\r\n" + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


def engine_for(hook: TrutoHook) -> BulkEngine:
    return BulkEngine(
        hook,
        RowPreparer(hook=hook, identity=RunIdentity("dag", "task", "run")),
        settings=BulkSettings(max_concurrency=1, progress_every_seconds=None),
        ledger=SuccessLedger(MemoryLedgerStore()),
        logger=logging.getLogger("test.wires"),
    )


def observed(engine: BulkEngine, summary: dict[str, Any]) -> dict[str, Any]:
    """What a wire may not change: the row's outcome and reasons, counts, the pacer's state."""
    (acct,) = engine._accounts.values()
    pacer = acct.pacer
    keep = ("outcomes", "status_codes", "responses", "retries", "rate_limited", "requests_sent")
    return {
        **{k: summary[k] for k in keep},
        "rejected": summary["rejected"]["rows"],
        "closed": acct.dead is not None,
        "pacer": (pacer.probing, pacer.limit, pacer.avail, pacer.consecutive_429),
    }


async def _run(hook: TrutoHook, fmt: str | None) -> dict[str, Any]:
    engine = engine_for(hook)
    assert (engine.sender._raw is not None) is isinstance(hook.async_transport, AiohttpTransport)
    engine.preparer.response_format = fmt
    try:
        summary = await engine.run(open_source([{"id": "1", "body": {"amount": 1}}]))
    finally:
        await hook.aclose()
    return observed(engine, summary)


def through_aiohttp(script: Script, monkeypatch: pytest.MonkeyPatch, fmt: str | None) -> Any:
    async def go() -> dict[str, Any]:
        server = ScriptedServer(script)
        listener = await asyncio.start_server(server.serve, "127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        monkeypatch.setenv("AIRFLOW_CONN_TRUTO_WIRES", truto_conn_json(f"http://127.0.0.1:{port}"))
        transport = AiohttpTransport()
        hook = TrutoHook("truto_wires", async_transport=transport, retry_policy=POLICY)
        try:
            return await _run(hook, fmt)
        finally:
            await transport.aclose()
            listener.close()
            await listener.wait_closed()

    return asyncio.run(go())


def through_httpx2(script: Script, monkeypatch: pytest.MonkeyPatch, fmt: str | None) -> Any:
    answers = iter(script)

    def handler(request: httpx2.Request) -> httpx2.Response:
        status, headers, body = next(answers)
        return httpx2.Response(status, headers=headers, content=body)

    monkeypatch.setenv("AIRFLOW_CONN_TRUTO_WIRES", truto_conn_json("http://127.0.0.1:9"))
    hook = TrutoHook(
        "truto_wires", async_transport=httpx2.MockTransport(handler), retry_policy=POLICY
    )
    return asyncio.run(_run(hook, fmt))


POLICY = RetryPolicy(max_retries=2, backoff_base=0.001, max_wait=0.05)


@pytest.mark.parametrize("case", CASES)
def test_both_wires_settle_a_row_the_same_way(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    fmt = "raw" if case.startswith("raw-") else None
    fast = through_aiohttp(CASES[case], monkeypatch, fmt)
    plain = through_httpx2(CASES[case], monkeypatch, fmt)
    assert fast == plain
    assert TOKEN not in repr(fast)


def test_the_cases_reach_every_outcome_they_are_about(monkeypatch: pytest.MonkeyPatch) -> None:
    """The corpus is not vacuous: it covers success, refusal, retries, closing and budgets."""
    seen = {case: through_httpx2(script, monkeypatch, None) for case, script in CASES.items()}
    assert seen["object"]["outcomes"]["updated"] == 1
    assert seen["html-page"]["rejected"][0]["error"] == "unexpected_response"
    assert seen["429-then-ok"]["rate_limited"] == 1 and seen["429-then-ok"]["retries"] == 1
    assert seen["401-closes"]["closed"] is True
    assert seen["budget"]["pacer"][1:3] == (10, 7)
    assert seen["budget-repeated"]["pacer"][2] is None  # "5, 6" is no count: no budget
    echoed = seen["500-echoes-token"]["rejected"][0]["message"]
    assert "bad token" in echoed and TOKEN not in echoed


def test_an_answer_read_from_aiohttp_joins_repeated_headers_like_httpx2() -> None:
    import multidict

    raw = multidict.CIMultiDictProxy(
        multidict.CIMultiDict([("Retry-After", "1"), ("retry-after", "2"), ("X", "y")])
    )
    from truto_airflow.bulk.transport import _JoinedHeaders

    ours = _JoinedHeaders(raw)
    theirs = httpx2.Headers([("Retry-After", "1"), ("retry-after", "2"), ("X", "y")])
    assert ours["RETRY-AFTER"] == theirs["retry-after"] == "1, 2"
    assert dict(ours) == dict(theirs.items())
    assert ours.get("Retry-After") == theirs.get("retry-after") == "1, 2"
    assert ours.get("x") == theirs.get("X") == "y"
    assert ours.get("missing") is None and ours.get("missing", "-") == "-" and len(ours) == 2
    answer = Answer(429, ours, b"{}", [(b"Retry-After", b"1"), (b"retry-after", b"2")])
    assert answer.response().headers["retry-after"] == "1, 2"
