"""A hook shared by threads or tasks: one closing it never breaks another's write.

The server here applies a PATCH once per Idempotency-Key and replays the stored answer for a
repeat, like Truto. The first attempt of the survivor is applied and then held until another
user has closed the hook; its answer is then lost (500 or a dropped connection), so the write
must be retried on a client that is still open. The survivor must end with its answer or a
typed, retry-safe error, never a raw RuntimeError ("the client has been closed").
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import httpx2
import pytest

from truto_airflow.exceptions import TrutoAPIError, TrutoNetworkError
from truto_airflow.hooks.truto import TrutoHook
from truto_airflow.retry import RetryPolicy

OPP = {"id": "1", "amount": 5}
LOST = ["answered", "500", "dropped"]  # what happened to the held first attempt's answer


class IdempotentServer:
    """Applies each Idempotency-Key once; the first attempt is held on ``release``."""

    def __init__(self, lost: str) -> None:
        self.lost = lost
        self.applied: dict[str, int] = {}
        self.attempts = 0

    def apply(self, request: httpx2.Request) -> None:
        self.attempts += 1
        key = request.headers["idempotency-key"]
        self.applied.setdefault(key, 1)  # a repeat of the key is a replay, not a second apply

    def async_handler(
        self, in_flight: asyncio.Event, closed: asyncio.Event
    ) -> Callable[[httpx2.Request], Awaitable[httpx2.Response]]:
        """Holds the first attempt until ``closed`` (set right after the sibling's aclose)."""

        async def handler(request: httpx2.Request) -> httpx2.Response:
            first = self.attempts == 0
            self.apply(request)
            if first:
                in_flight.set()
                await closed.wait()
            return self.answer(first, request)

        return handler

    def answer(self, first: bool, request: httpx2.Request) -> httpx2.Response:
        if first and self.lost == "500":
            return httpx2.Response(500, json={"statusCode": 500, "message": "lost"})
        if first and self.lost == "dropped":
            raise httpx2.RemoteProtocolError("server disconnected", request=request)
        return httpx2.Response(200, json=OPP)


def typed_or_answer(outcome: Any) -> None:
    """The survivor's answer, or a typed retry-safe error; never a raw RuntimeError."""
    if isinstance(outcome, BaseException):
        assert isinstance(outcome, (TrutoAPIError, TrutoNetworkError)), (
            f"raw {type(outcome).__name__}: {outcome}"
        )


@pytest.mark.usefixtures("truto_conn")
@pytest.mark.parametrize("lost", LOST)
def test_threads_close_during_an_applied_write(lost: str) -> None:
    server = IdempotentServer(lost)
    in_flight, closed = threading.Event(), threading.Event()

    def handler(request: httpx2.Request) -> httpx2.Response:
        first = server.attempts == 0
        server.apply(request)
        if first:
            in_flight.set()
            closed.wait()  # set by the main thread right after close(); never a timer
        return server.answer(first, request)

    hook = TrutoHook(
        transport=httpx2.MockTransport(handler),
        retry_policy=RetryPolicy(max_retries=2, sleep=lambda s: None),
    )
    outcome: list[Any] = []

    def survivor() -> None:
        try:
            outcome.append(hook.update_opportunity("1", {"amount": 5}, idempotency_key="k-1"))
        except BaseException as exc:  # recorded and judged below
            outcome.append(exc)

    thread = threading.Thread(target=survivor)
    thread.start()
    in_flight.wait()
    hook.close()  # another operator sharing the hook is done with it
    closed.set()
    thread.join()
    typed_or_answer(outcome[0])
    assert outcome[0] == OPP  # retries were left: the survivor got its answer
    assert server.applied == {"k-1": 1}  # applied once; a resend is a replay


@pytest.mark.usefixtures("truto_conn")
@pytest.mark.parametrize("lost", LOST)
def test_tasks_aclose_during_an_applied_write(lost: str) -> None:
    server = IdempotentServer(lost)

    async def main() -> Any:
        in_flight, closed = asyncio.Event(), asyncio.Event()
        handler = server.async_handler(in_flight, closed)

        async def no_sleep(seconds: float) -> None:
            return None

        hook = TrutoHook(
            async_transport=httpx2.MockTransport(handler),
            retry_policy=RetryPolicy(max_retries=2, async_sleep=no_sleep),
        )

        async def survivor() -> Any:
            try:
                return await hook.aupdate_opportunity("1", {"amount": 5}, idempotency_key="k-1")
            except BaseException as exc:
                return exc

        task = asyncio.create_task(survivor())
        await in_flight.wait()
        await hook.aclose()  # another task sharing the hook is done with it
        closed.set()
        outcome = await task
        await hook.aclose()
        return outcome, hook

    outcome, hook = asyncio.run(main())
    typed_or_answer(outcome)
    assert outcome == OPP
    assert server.applied == {"k-1": 1}
    assert hook._async_client is None


@pytest.mark.usefixtures("truto_conn")
def test_bulk_single_attempt_survives_a_sibling_aclose() -> None:
    """``asend_once`` (the bulk engine's send) on a hook another task closes meanwhile."""
    server = IdempotentServer("answered")

    async def main() -> Any:
        in_flight, closed = asyncio.Event(), asyncio.Event()
        handler = server.async_handler(in_flight, closed)

        hook = TrutoHook(async_transport=httpx2.MockTransport(handler))
        first = asyncio.create_task(hook.asend_once(hook.prepare_update("1", {"amount": 5})))
        await in_flight.wait()
        await hook.aclose()
        closed.set()
        answered = await first
        # ... and the hook is usable again afterwards (a fresh pool).
        again = await hook.asend_once(hook.prepare_update("2", {"amount": 6}))
        await hook.aclose()
        return answered.status_code, again.status_code

    assert asyncio.run(main()) == (200, 200)


@pytest.mark.usefixtures("truto_conn")
def test_close_with_nothing_in_flight_closes_at_once() -> None:
    hook = TrutoHook(transport=httpx2.MockTransport(lambda r: httpx2.Response(200, json=OPP)))
    client = hook.get_conn()
    hook.update_opportunity("1", {"amount": 1})
    hook.close()
    assert client.is_closed
    assert hook.update_opportunity("1", {"amount": 1}) == OPP  # reopened on next use
    hook.close()


@pytest.mark.usefixtures("truto_conn")
def test_aclose_during_a_write_on_the_aiohttp_wire(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bulk default wire (aiohttp's pool, one session shared by the hook's clients) over a
    real loopback socket: a sibling's aclose() while a PATCH is in flight."""
    pytest.importorskip("aiohttp")
    from tests.conftest import truto_conn_json
    from truto_airflow.bulk.transport import AiohttpTransport

    async def main() -> tuple[Any, Any]:
        in_flight, closed = asyncio.Event(), asyncio.Event()
        body = b'{"id": "1", "amount": 5}'

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:  # the client closed its connection
                    writer.close()
                    return
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
                await reader.readexactly(length)
                if not in_flight.is_set():
                    in_flight.set()
                    await closed.wait()
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    b"content-length: %d\r\n\r\n%s" % (len(body), body)
                )
                await writer.drain()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        monkeypatch.setenv(
            "AIRFLOW_CONN_TRUTO_DEFAULT", truto_conn_json(f"http://127.0.0.1:{port}")
        )
        hook = TrutoHook(
            async_transport=AiohttpTransport(), retry_policy=RetryPolicy(max_retries=0)
        )

        async def survivor(opp: str) -> Any:
            try:
                return await hook.aupdate_opportunity(opp, {"amount": 5})
            except BaseException as exc:
                return exc

        first = asyncio.create_task(survivor("1"))
        await in_flight.wait()
        await hook.aclose()
        second = asyncio.create_task(survivor("2"))  # reopens while the first is in flight
        closed.set()
        outcome = await first, await second
        await hook.aclose()
        server.close()
        await server.wait_closed()
        return outcome

    first, second = asyncio.run(main())
    typed_or_answer(first)
    typed_or_answer(second)
    assert first == second == OPP


@pytest.mark.usefixtures("truto_conn")
def test_the_async_client_is_reused_only_while_open_and_on_its_loop() -> None:
    """The lease's quick path (every bulk row leases the client) hands back the same client only
    while it is open and on the loop that made it; the httpx2 logger is quieted when one is
    made, unless the user set its level."""
    import logging

    logger = logging.getLogger("httpx2")
    saved = logger.level
    hook = TrutoHook(async_transport=httpx2.MockTransport(lambda r: httpx2.Response(200)))

    async def clients() -> list[httpx2.AsyncClient]:
        first = hook.get_async_conn()
        same = hook.get_async_conn()
        await first.aclose()  # closed behind the hook's back: a new one
        fresh = hook.get_async_conn()
        return [first, same, fresh]

    try:
        logger.setLevel(logging.NOTSET)
        first, same, fresh = asyncio.run(clients())
        assert same is first and fresh is not first and not fresh.is_closed
        assert logger.level == logging.WARNING
        logger.setLevel(logging.DEBUG)  # the user's choice stands
        other_loop = asyncio.run(clients())[0]  # another event loop: its own client
        assert other_loop is not fresh
        assert logger.level == logging.DEBUG
    finally:
        logger.setLevel(saved)
