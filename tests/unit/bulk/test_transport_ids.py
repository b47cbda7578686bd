"""Ids on the wire: whatever id is accepted reaches the server as exactly that id.

A tiny HTTP/1.1 server on loopback records the raw request target of every request; the test
sends ids through the hook's httpx2 client (sync and async) and through the aiohttp transport
(both its httpx2 entry point and the bulk fast path) and decodes what the server saw.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from urllib.parse import unquote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import truto_conn_json
from truto_airflow.bulk.sender import BulkSender
from truto_airflow.bulk.transport import AiohttpTransport
from truto_airflow.exceptions import TrutoInputError
from truto_airflow.hooks.truto import OPPORTUNITIES_PATH, TrutoHook, opportunity_path

pytest.importorskip("aiohttp")


class RawServer:
    """Answers every request with ``{}`` and keeps each raw request target (bytes, as sent)."""

    def __init__(self) -> None:
        self.targets: list[str] = []
        self.keys: list[str | None] = []
        #: Each request's headers as sent: (lower-case name, value), in order.
        self.heads: list[list[tuple[str, str]]] = []
        self.loop = asyncio.new_event_loop()
        self.port = 0
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self.thread.start()
        ready.wait()

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.server = server
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                _, target, _ = line.decode("latin-1").split(" ", 2)
                length = 0
                key = None
                head: list[tuple[str, str]] = []
                while (header := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = header.decode("latin-1").partition(":")
                    head.append((name.strip().lower(), value.strip()))
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                    if name.strip().lower() == "idempotency-key":
                        key = value.strip()
                if length:
                    await reader.readexactly(length)
                self.targets.append(target)
                self.keys.append(key)
                self.heads.append(head)
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 2\r\n\r\n{}"
                )
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()

    async def _shutdown(self) -> None:
        self.server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def server() -> Iterator[RawServer]:
    srv = RawServer()
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def conn_id(server: RawServer) -> Iterator[str]:
    mp = pytest.MonkeyPatch()
    mp.setenv("AIRFLOW_CONN_TRUTO_WIRE", truto_conn_json(f"http://127.0.0.1:{server.port}"))
    yield "truto_wire"
    mp.undo()


def seen_id(target: str) -> str:
    """The id the server saw: the last path segment of the raw target, percent-decoded once."""
    path = target.split("?", 1)[0]
    assert path.startswith(OPPORTUNITIES_PATH + "/"), target
    segment = path[len(OPPORTUNITIES_PATH) + 1 :]
    assert "/" not in segment, target
    return unquote(segment, errors="strict")


class Senders:
    """Hooks for every transport, built once (the connection is read once)."""

    def __init__(self, conn_id: str) -> None:
        self.sync = TrutoHook(conn_id, max_retries=0)
        self.plain = TrutoHook(conn_id, max_retries=0)
        self.transport = AiohttpTransport()
        self.fast = TrutoHook(conn_id, max_retries=0, async_transport=self.transport)

    def send_all(self, opportunity_id: str) -> None:
        """One PATCH per path: httpx2 sync and async, aiohttp through httpx2 and its fast path."""
        body = {"amount": 1}
        self.sync.update_opportunity(opportunity_id, body)

        async def go() -> None:
            try:
                await self.plain.aupdate_opportunity(opportunity_id, body)
                await self.plain.asend_once(self.plain.prepare_update(opportunity_id, body))
                await self.fast.aupdate_opportunity(opportunity_id, body)  # httpx2 -> aiohttp
                await BulkSender(self.fast).send_once(
                    self.fast.prepare_update(opportunity_id, body)
                )
            finally:
                await self.plain.aclose()
                await self.fast.aclose()
                await self.transport.aclose()

        asyncio.run(go())


@pytest.fixture(scope="module")
def senders(conn_id: str) -> Iterator[Senders]:
    made = Senders(conn_id)
    yield made
    made.sync.close()


def assert_arrives_exactly(server: RawServer, senders: Senders, opportunity_id: str) -> None:
    before = len(server.targets)
    senders.send_all(opportunity_id)
    seen = [seen_id(t) for t in server.targets[before:]]
    assert seen == [opportunity_id] * 5


TRICKY = [
    "...",
    "%2E%2E",
    ".%2e",
    "%2e",
    "a/../b",
    "../x",
    "a/b",
    "a?b=c",
    "a#b",
    "a b",
    "100%",
    "%",
    "%25",
    "%zz",
    "a+b",
    "a;b=c",
    "ünïcödé",
    "日本語",
    "\U0001f600",
    "006Dn00000AbCdE",
    "x" * 512,
    "\\..\\",
    "a\\b",
    "~user",
    "@:$&'()*,=!",
]


@pytest.mark.parametrize("opportunity_id", TRICKY)
def test_tricky_ids_reach_the_server_exactly(
    server: RawServer, senders: Senders, opportunity_id: str
) -> None:
    assert_arrives_exactly(server, senders, opportunity_id)


id_text = (
    st.lists(
        st.one_of(
            st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Zl", "Zp")),
            st.sampled_from([*"%./?#[]@!$&'()*+,;= \\^`{}|\"<>~", "%2E", "%2F", "%25", ".."]),
        ),
        min_size=1,
        max_size=20,
    )
    .map("".join)
    .filter(lambda s: s.strip() and s not in {".", ".."})
)


@settings(max_examples=40)  # five real requests per example
@given(id_text)
def test_any_accepted_id_reaches_the_server_exactly(
    server: RawServer, senders: Senders, opportunity_id: str
) -> None:
    assert_arrives_exactly(server, senders, opportunity_id)


@pytest.mark.parametrize("dots", [".", ".."])
def test_dot_ids_are_refused_before_anything_is_sent(
    server: RawServer, senders: Senders, dots: str
) -> None:
    # "%2E%2E" is a dot-segment to URL normalisers (yarl, WHATWG), so encoding is not enough:
    # on aiohttp ".." used to arrive as PATCH /unified/crm/ and be reported updated.
    before = len(server.targets)
    with pytest.raises(TrutoInputError, match="opportunity_id"):
        senders.send_all(dots)
    assert server.targets[before:] == []


@given(st.text(max_size=600))
def test_an_id_is_either_refused_or_one_segment(opportunity_id: str) -> None:
    try:
        path = opportunity_path(opportunity_id)
    except TrutoInputError as exc:
        message = str(exc)
    else:
        assert seen_id(path) == opportunity_id
        return
    assert "opportunity_id" in message and len(message) < 1000


def test_caller_idempotency_key_reaches_the_server_exactly(server: RawServer, conn_id: str) -> None:
    before = len(server.keys)
    with TrutoHook(conn_id, max_retries=0) as hook:
        hook.update_opportunity("o1", {"amount": 1}, idempotency_key="run-7:row-3 v2")
    assert server.keys[before:] == ["run-7:row-3 v2"]


BASES = [
    "https://api.truto.one",
    "http://127.0.0.1:8080",
    "http://[::1]:9000/",
    "https://proxy.example.com/truto",
    "https://proxy.example.com/a%20b/truto/",
]


@settings(max_examples=200)
@given(id_text, st.sampled_from(BASES), st.dictionaries(st.text(max_size=8), st.text(max_size=8)))
def test_the_fast_path_builds_the_url_the_hook_would_send(
    opportunity_id: str, base: str, remote_query: dict[str, str]
) -> None:
    """The fast path builds URLs from parts (BaseURL, a query cached per params): byte for byte
    what ``PreparedRequest.url`` gives, for any accepted id, base URL and query."""
    from truto_airflow.bulk.transport import BaseURL

    hook = TrutoHook.__new__(TrutoHook)
    try:
        request = TrutoHook.prepare_update(
            hook,
            opportunity_id,
            {"amount": 1},
            integrated_account_id="62f44730-dd91-461e-bd6a-aedd9e0ad79d",
            remote_query=remote_query or None,
        )
    except TrutoInputError:
        return  # refused before anything is built (a query that cannot be encoded)
    sender = BulkSender.__new__(BulkSender)
    sender._queries = {}
    built = BaseURL(base).url(request.path, sender._query(request))
    assert str(built) == request.url(base)


def test_a_yarl_that_cannot_build_from_parts_falls_back_to_parsing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An older yarl without ``URL.build(authority=...)``: the same URLs, parsed per row."""
    import yarl

    from truto_airflow.bulk.transport import BaseURL

    def old_build(**_kwargs: object) -> yarl.URL:
        raise TypeError("build() got an unexpected keyword argument 'authority'")

    monkeypatch.setattr(yarl.URL, "build", old_build)
    base = BaseURL("https://proxy.example.com/truto/")
    assert str(base.url("/unified/crm/opportunities/%2E%2E", "a=%20")) == (
        "https://proxy.example.com/truto/unified/crm/opportunities/%2E%2E?a=%20"
    )
    assert str(base.url("/x", "")) == "https://proxy.example.com/truto/x"


def test_the_fast_path_sends_the_headers_httpx2_sends(server: RawServer, conn_id: str) -> None:
    """Same names, values and count on both wires (aiohttp adds none of its own defaults):
    pure httpx2, the aiohttp transport behind httpx2, and the bulk fast path."""
    plain = TrutoHook(conn_id, max_retries=0)
    transport = AiohttpTransport()
    fast = TrutoHook(conn_id, max_retries=0, async_transport=transport)
    before = len(server.heads)

    async def go() -> None:
        try:
            for hook in (plain, fast):
                request = hook.prepare_update("o1", {"amount": 1}, idempotency_key="k-1")
                await hook.asend_once(request)
            await BulkSender(fast).send_once(
                fast.prepare_update("o1", {"amount": 1}, idempotency_key="k-1")
            )
        finally:
            await plain.aclose()
            await fast.aclose()
            await transport.aclose()

    asyncio.run(go())
    httpx2_head, behind_httpx2, fast_path = (sorted(h) for h in server.heads[before:])
    assert fast_path == behind_httpx2 == httpx2_head
    names = [name for name, _ in fast_path]
    assert len(names) == len(set(names)) and "idempotency-key" in names


@pytest.mark.parametrize(
    "given",
    [
        ["Accept", "Accept-Encoding", "Content-Type", "User-Agent"],
        ["accept", "content-type"],
        [],
    ],
)
def test_the_fast_path_never_adds_aiohttps_automatic_headers(
    server: RawServer, given: list[str]
) -> None:
    """Whatever default headers a client has, aiohttp adds none (skip list worked out once)."""
    from truto_airflow.bulk.transport import AUTO_HEADERS, BaseURL, auto_headers_missing

    transport = AiohttpTransport()
    headers = {name: f"v-{name.lower()}" for name in given}
    before = len(server.heads)
    skip = auto_headers_missing(headers)
    assert skip == (
        tuple(n for n in AUTO_HEADERS if n.lower() not in map(str.lower, given)) or None
    )

    async def go() -> None:
        try:
            base = BaseURL(f"http://127.0.0.1:{server.port}")
            await transport.send_raw("PATCH", base, "/x", "", headers, b"{}", timeout=5, skip=skip)
        finally:
            await transport.aclose()

    asyncio.run(go())
    (head,) = server.heads[before:]
    assert sorted(head) == sorted(
        [(n.lower(), v) for n, v in headers.items()]
        + [("host", f"127.0.0.1:{server.port}"), ("content-length", "2")]
    )
