"""The hook's pooled httpx2 clients and their lifecycle.

One :class:`httpx2.Client` (and, for async callers, one :class:`httpx2.AsyncClient` per event
loop) is kept per hook so calls reuse connections. A client is *leased* for each attempt:
``close()`` detaches it at once (new attempts get a new pool) but only the last lease holder
actually closes it, so a sibling's close never breaks a request in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import threading
from collections.abc import AsyncIterator, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import httpx2

from truto_airflow import __version__

if TYPE_CHECKING:
    from typing_extensions import Self

    from truto_airflow.hooks._connection import TrutoConnectionSettings
    from truto_airflow.hooks._wire import PreparedRequest

__all__ = ["USER_AGENT"]

USER_AGENT = f"truto-airflow/{__version__}"


def _quiet_httpx_logger() -> None:
    """httpx2 logs every request URL at INFO; at bulk volume that floods task logs, and the
    operators log one line per update themselves. Respect a level the user set explicitly."""
    logger = logging.getLogger("httpx2")
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.WARNING)


_SSL_CONTEXTS: dict[tuple[str | None, str | None], ssl.SSLContext] = {}
_SSL_LOCK = threading.Lock()


def _shared_ssl_context() -> ssl.SSLContext:
    """httpx2's default verifying context, built once per process (per SSL_CERT_FILE/_DIR).

    Building one reads the CA bundle (about 25 ms idle, 150 ms on a loaded worker); every task's
    client used to build its own, which made a mapped single-row task slower than HttpOperator.
    """
    key = (os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
    with _SSL_LOCK:
        context = _SSL_CONTEXTS.get(key)
        if context is None:
            context = _SSL_CONTEXTS[key] = httpx2.create_ssl_context()
        return context


_C = TypeVar("_C")


class _Leases(Generic[_C]):
    """Clients in use by attempts in flight, and those closed meanwhile (their last user closes
    them). Not locked itself: the hook locks the sync client's leases."""

    def __init__(self) -> None:
        self._count: dict[_C, int] = {}
        self._retired: set[_C] = set()

    def __bool__(self) -> bool:
        return bool(self._count)

    def take(self, client: _C) -> None:
        self._count[client] = self._count.get(client, 0) + 1

    def retire(self, client: _C) -> bool:
        """Detach ``client``: ``True`` if nobody uses it (close it now), else its last user will."""
        if client in self._count:
            self._retired.add(client)
            return False
        return True

    def give_back(self, client: _C) -> bool:
        """End one lease: ``True`` when ``client`` was retired and this was its last user."""
        left = self._count[client] - 1
        if left:
            self._count[client] = left
            return False
        del self._count[client]
        if client in self._retired:
            self._retired.discard(client)
            return True
        return False


class _KeepOpen(httpx2.BaseTransport):
    """A transport given to the hook, as one client sees it: closing that client leaves it open
    for the hook's other clients (the hook closes it with its last client)."""

    def __init__(self, inner: httpx2.BaseTransport) -> None:
        self.inner = inner

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        return self.inner.handle_request(request)

    def close(self) -> None:
        return None


class _AsyncKeepOpen(httpx2.AsyncBaseTransport):
    """The async :class:`_KeepOpen`."""

    def __init__(self, inner: httpx2.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        return None


class _ClientLifecycle:
    """Client creation, leases and closing (mixed into the hook)."""

    _transport: httpx2.BaseTransport | None
    _async_transport: httpx2.AsyncBaseTransport | None
    _max_connections: int
    _client: httpx2.Client | None
    _async_client: httpx2.AsyncClient | None
    _async_loop: asyncio.AbstractEventLoop | None
    _lock: threading.Lock
    _leases: _Leases[httpx2.Client]
    _aleases: _Leases[httpx2.AsyncClient]

    if TYPE_CHECKING:

        @property
        def settings(self) -> TrutoConnectionSettings: ...

    def _client_kwargs(self) -> dict[str, Any]:
        settings = self.settings
        return {
            "base_url": settings.base_url,
            "headers": {
                "Authorization": f"Bearer {settings.token}",
                "Accept": "application/json",
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
            },
            "timeout": httpx2.Timeout(settings.timeout, connect=min(10.0, settings.timeout)),
            "follow_redirects": False,  # a redirect must never carry the token to another host
            "verify": _shared_ssl_context(),
        }

    def get_conn(self) -> httpx2.Client:
        """The hook's pooled client (created on first use, reused until :meth:`close`)."""
        _quiet_httpx_logger()
        if self._client is None or self._client.is_closed:
            limits = httpx2.Limits(
                max_connections=self._max_connections,
                max_keepalive_connections=min(self._max_connections, 50),
            )
            self._client = httpx2.Client(
                transport=_KeepOpen(self._transport) if self._transport else None,
                limits=limits,
                **self._client_kwargs(),
            )
        return self._client

    def get_async_conn(self) -> httpx2.AsyncClient:
        """The hook's pooled async client for the running event loop."""
        loop = asyncio.get_running_loop()
        client = self._async_client
        if client is not None and self._async_loop is loop and not client.is_closed:
            return client  # each bulk row leases it: nothing else to do on the way
        _quiet_httpx_logger()
        limits = httpx2.Limits(
            max_connections=self._max_connections,
            max_keepalive_connections=self._max_connections,
        )
        client = self._async_client = httpx2.AsyncClient(
            transport=_AsyncKeepOpen(self._async_transport) if self._async_transport else None,
            limits=limits,
            **self._client_kwargs(),
        )
        self._async_loop = loop
        return client

    def close(self) -> None:
        """Close the sync client (the async one is closed by :meth:`aclose`).

        Safe while other threads use the hook: a request in flight keeps its client until it
        ends (the last one closes it), and any later attempt, a retry included, opens a fresh
        pool. So a sibling's close never turns a write, applied or not, into a RuntimeError.
        """
        with self._lock:
            client, self._client = self._client, None
            close_now = client is not None and self._leases.retire(client)
        if client is not None and close_now:
            self._close_client(client)

    async def aclose(self) -> None:
        """Close the async client (deferred, like :meth:`close`, while requests use it)."""
        client, self._async_client = self._async_client, None
        self._async_loop = None
        if client is not None and self._aleases.retire(client):
            await self._aclose_client(client)

    # A client is *leased* for each attempt: close() detaches it at once (new attempts get a
    # new pool) but only the last lease holder actually closes it.

    @contextlib.contextmanager
    def _lease(self) -> Iterator[httpx2.Client]:
        with self._lock:
            client = self.get_conn()
            self._leases.take(client)
        try:
            yield client
        finally:
            with self._lock:
                last = self._leases.give_back(client)
            if last:
                self._close_client(client)

    @property
    def async_transport(self) -> httpx2.AsyncBaseTransport | None:
        """The async transport given to the hook (``None``: httpx2's own)."""
        return self._async_transport

    def lease_async_client(self) -> httpx2.AsyncClient:
        """Lease the pooled async client for one request; pair with :meth:`return_async_client`
        in ``try/finally`` (a few microseconds cheaper per request than a context manager). A
        :meth:`aclose` meanwhile closes the client only once every lease is back."""
        client = self.get_async_conn()
        self._aleases.take(client)
        return client

    async def return_async_client(self, client: httpx2.AsyncClient) -> None:
        """Give back a client from :meth:`lease_async_client`."""
        if self._aleases.give_back(client):
            await self._aclose_client(client)

    def _close_client(self, client: httpx2.Client) -> None:
        """Close a client; a transport given to the hook closes with the hook's last client."""
        client.close()
        with self._lock:
            if self._transport is not None and self._client is None and not self._leases:
                self._transport.close()

    async def _aclose_client(self, client: httpx2.AsyncClient) -> None:
        await client.aclose()
        if self._async_transport is not None and self._async_client is None and not self._aleases:
            await self._async_transport.aclose()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @contextlib.asynccontextmanager
    async def async_session(self) -> AsyncIterator[Self]:
        """``async with hook.async_session():`` closes the async client on exit."""
        try:
            yield self
        finally:
            await self.aclose()

    # -- one attempt, for callers that decide retries themselves (the bulk engine) ------------
    # The transport interface the hook offers: ``asend_once`` (one attempt, the raw response
    # whatever its status), or ``lease_async_client``/``return_async_client`` around a caller's
    # own wire (truto_airflow.bulk.sender). The hook knows no caller's fast path.

    async def asend_once(self, request: PreparedRequest) -> httpx2.Response:
        """Send one attempt and return the response whatever its status (no retries).

        Transport failures propagate as ``httpx2`` exceptions; turn an error response into the
        typed Truto error with :meth:`api_error`.
        """
        client = self.lease_async_client()
        try:
            return await client.request(
                request.method,
                request.url(client.base_url),
                content=request.content,
                headers=request.headers,
            )
        finally:
            await self.return_async_client(client)
