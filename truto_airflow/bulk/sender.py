"""The bulk engine's one way to send: one attempt, the raw response, whatever its status.

The engine decides retries and pacing itself (per row, per integrated account), so it needs
exactly one attempt and the response's status and rate-limit headers. It sends through the
hook's pooled client (same base URL, token, headers, timeout, no redirects); when the hook was
built on :class:`~truto_airflow.bulk.transport.AiohttpTransport`, the request goes straight to
that transport's :meth:`~truto_airflow.bulk.transport.AiohttpTransport.send_raw`, skipping
httpx2's per-request URL and header merging. That fast path is the bulk room's business: the
hook only offers :meth:`TrutoHook.asend_once` and its client lease.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx2

from truto_airflow.bulk.transport import AiohttpTransport

if TYPE_CHECKING:
    from truto_airflow.hooks.truto import PreparedRequest, TrutoHook

__all__ = ["BulkSender"]


class BulkSender:
    """Sends one attempt of a prepared request for the bulk engine.

    Transport failures propagate as ``httpx2`` exceptions; an error response is returned, and
    :meth:`TrutoHook.api_error` turns it into the typed Truto error.
    """

    def __init__(self, hook: TrutoHook) -> None:
        self.hook = hook
        transport = hook.async_transport
        self._raw = transport if isinstance(transport, AiohttpTransport) else None

    async def send_once(self, request: PreparedRequest) -> httpx2.Response:
        if self._raw is None:
            return await self.hook.asend_once(request)
        client = self.hook.lease_async_client()
        try:
            headers = [*client.headers.items(), *request.headers.items()]
            return await self._raw.send_raw(
                request.method,
                request.url(client.base_url),
                headers,
                request.content,
                timeout=self.hook.settings.timeout,
            )
        finally:
            await self.hook.return_async_client(client)
