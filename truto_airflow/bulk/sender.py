"""The bulk engine's one way to send: one attempt, the raw answer, whatever its status.

The engine decides retries and pacing itself (per row, per integrated account), so it needs
exactly one attempt and the answer's status, rate-limit headers and body, as an
:class:`~truto_airflow.bulk.transport.Answer`. It sends through the hook's pooled client (same
base URL, token, headers, timeout, no redirects). When the hook was built on
:class:`~truto_airflow.bulk.transport.AiohttpTransport`, the request goes straight to that
transport's :meth:`~truto_airflow.bulk.transport.AiohttpTransport.send_raw`: the client's base
URL and default headers are read once per client, the query string once per distinct set of
query parameters (one per account and options), so a row costs a string join and a small dict,
and no httpx2 request or response is built (an error answer gets its ``httpx2.Response`` when
the hook maps it). That fast path is the bulk room's business: the hook only offers
:meth:`TrutoHook.asend_once` and its client lease.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx2

from truto_airflow.bulk.transport import (
    AUTO_HEADERS,
    AiohttpTransport,
    Answer,
    BaseURL,
    auto_headers_missing,
)

if TYPE_CHECKING:
    from truto_airflow.hooks.truto import PreparedRequest, TrutoHook

__all__ = ["Answer", "BulkSender"]

#: Distinct query strings kept (one per account and option set; a run rarely has more).
_QUERY_CACHE_SIZE = 4096


class BulkSender:
    """Sends one attempt of a prepared request for the bulk engine.

    Transport failures propagate as ``httpx2`` exceptions (raised before any byte is sent when
    the request itself cannot be built); an error answer is returned, and
    :meth:`TrutoHook.api_error` turns its :meth:`~Answer.response` into the typed Truto error.
    """

    def __init__(self, hook: TrutoHook) -> None:
        self.hook = hook
        transport = hook.async_transport
        self._raw = transport if isinstance(transport, AiohttpTransport) else None
        self._client: httpx2.AsyncClient | None = None
        self._base: BaseURL | None = None
        self._headers: dict[str, str] = {}
        self._skip: tuple[str, ...] | None = AUTO_HEADERS
        self._queries: dict[tuple[tuple[str, str], ...], str] = {}

    async def send_once(self, request: PreparedRequest) -> Answer:
        raw = self._raw
        if raw is None:
            return Answer.of(await self.hook.asend_once(request))
        client = self.hook.lease_async_client()
        try:
            base = self._base
            if base is None or client is not self._client:
                base = self._learn(client)
            headers = self._headers
            key = request.idempotency_key
            if key:
                headers = {**headers, "Idempotency-Key": key}
            return await raw.send_raw(
                request.method,
                base,
                request.path,
                self._query(request),
                headers,
                request.content,
                timeout=self.hook.settings.timeout,
                skip=self._skip,
            )
        finally:
            await self.hook.return_async_client(client)

    def _learn(self, client: httpx2.AsyncClient) -> BaseURL:
        """What every request of this client shares: the base URL, the default headers and
        so which of aiohttp's automatic headers must be skipped (a row adds only its key)."""
        self._client = client
        self._base = BaseURL(str(client.base_url))
        self._headers = dict(client.headers.items())
        self._skip = auto_headers_missing(self._headers)
        return self._base

    def _query(self, request: PreparedRequest) -> str:
        """The encoded query (without ``?``), by :meth:`PreparedRequest.url`'s rule, per params."""
        params = tuple(request.params)
        query = self._queries.get(params)
        if query is None:
            query = request.url("")[len(request.path) + 1 :]
            if len(self._queries) >= _QUERY_CACHE_SIZE:
                self._queries.clear()
            self._queries[params] = query
        return query
