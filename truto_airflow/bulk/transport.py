"""An ``httpx2`` async transport on aiohttp's connection pool, for the bulk path.

The bulk engine still talks through the hook's :class:`httpx2.AsyncClient` (same base URL,
headers, token, timeouts, redirect policy, errors); only the wire underneath changes, because
aiohttp's pool costs much less CPU per request than httpx2's own, which decides the throughput of
a CPU-bound worker at high concurrency (figures: docs/bulk.md, ``make bench``). aiohttp ships
with Airflow's http provider; without it the hook's default transport is used.

Failures are raised as the matching ``httpx2`` exceptions, so the retry policy is unchanged.
Redirects are never followed here (the client does not follow them either). URLs are handed to
aiohttp as already encoded (``yarl.URL(url, encoded=True)``): httpx2 and the hook have encoded
them, and yarl would otherwise decode and re-normalise the path (``%2E%2E`` -> ``..`` -> the
parent route), so an opportunity id would not arrive as the id that was validated.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx2

__all__ = ["AiohttpTransport", "Answer", "BaseURL", "aiohttp_available", "auto_headers_missing"]

#: Headers aiohttp adds to a request that lacks them (its defaults, a body's content type). A
#: request must carry exactly the headers httpx2 would send, so aiohttp is told to skip these.
AUTO_HEADERS = ("User-Agent", "Accept-Encoding", "Content-Type", "Accept")


def aiohttp_available() -> bool:
    return importlib.util.find_spec("aiohttp") is not None


def auto_headers_missing(names: Iterable[str]) -> tuple[str, ...] | None:
    """Which of :data:`AUTO_HEADERS` a request with these header names lacks (``None``: none).

    aiohttp adds none of them to a request that carries them all, so such a request needs no
    skip list, and a skip list costs aiohttp two header maps per request. The bulk fast path
    works this out once per client (its rows add only an ``Idempotency-Key``).
    """
    present = {name.lower() for name in names}
    missing = tuple(name for name in AUTO_HEADERS if name.lower() not in present)
    return missing or None


def _encoded(url: str) -> Any:
    """The URL exactly as built (see the module docstring: no decoding, no normalising)."""
    import yarl

    return yarl.URL(url, encoded=True)


class BaseURL:
    """A base URL's parts, parsed once, from which the fast path builds each request's URL.

    ``yarl.URL.build(..., encoded=True)`` from ready parts is about four times cheaper than
    parsing every row's URL string, and equally exact: nothing is decoded or normalised, so
    ``str(url(path, query)) == base + path + "?" + query`` (tests check it for every accepted id).
    The base is checked once: if this yarl builds it differently (or cannot build from an
    authority), every URL is parsed from its string instead, as before.
    """

    __slots__ = ("_authority", "_by_parts", "_path", "_scheme", "_text")

    def __init__(self, text: str) -> None:
        parsed = _encoded(text)
        self._text = text.rstrip("/")
        self._scheme = parsed.scheme
        self._authority = parsed.raw_authority
        self._path = parsed.raw_path.rstrip("/")
        self._by_parts = True
        try:
            probe = str(self.url("/a%2Fb", "q=%20"))
        except (TypeError, ValueError):
            probe = ""
        self._by_parts = probe == f"{self._text}/a%2Fb?q=%20"

    def url(self, path: str, query: str) -> Any:
        """``path`` (encoded, from ``/``) and ``query`` (encoded, without ``?``) under the base."""
        if not self._by_parts:
            return _encoded(f"{self._text}{path}?{query}" if query else f"{self._text}{path}")
        import yarl

        return yarl.URL.build(
            scheme=self._scheme,
            authority=self._authority,
            path=self._path + path,
            query_string=query,
            encoded=True,
        )


@dataclass(slots=True, eq=False)
class Answer:
    """One HTTP answer as the bulk engine reads it: status, headers, body.

    The engine needs the status, a few headers (rate limits, wait hints) and, for a 2xx, whether
    the body is Truto's JSON object; building an ``httpx2.Response`` around every answer cost
    about 7 % of the CPU per row at high concurrency. :meth:`response` builds one only for an
    answer that becomes an error (the hook maps errors from responses). ``headers`` look names
    up case-insensitively and join repeated headers with ``", "``, as ``httpx2.Headers`` does,
    so both wires read hints the same way.
    """

    status_code: int
    headers: Mapping[str, str]
    content: bytes
    #: The headers as the transport read them (name/value pairs), for :meth:`response`.
    raw_headers: Any = None
    #: The ``httpx2.Response``: httpx2's own, or the one :meth:`response` builds on first use.
    cached_response: httpx2.Response | None = field(default=None, repr=False)

    @classmethod
    def of(cls, response: httpx2.Response) -> Answer:
        """An answer read through httpx2 (the hook's own client)."""
        return cls(
            response.status_code, response.headers, response.content, cached_response=response
        )

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    def response(self) -> httpx2.Response:
        """The answer as an ``httpx2.Response`` (built on first use)."""
        if self.cached_response is None:
            headers = self.raw_headers
            if headers is None:
                headers = list(self.headers.items())
            self.cached_response = httpx2.Response(
                self.status_code, headers=headers, content=self.content
            )
        return self.cached_response


class _JoinedHeaders(Mapping[str, str]):
    """aiohttp's response headers read like ``httpx2.Headers`` (see :class:`Answer`)."""

    __slots__ = ("_headers",)

    def __init__(self, headers: Any) -> None:
        self._headers = headers  # multidict.CIMultiDictProxy[str]

    def __getitem__(self, name: str) -> str:
        return ", ".join(self._headers.getall(name))  # KeyError when absent

    def get(self, name: str, default: Any = None) -> Any:
        # Mapping.get would raise and catch a KeyError for each absent header (most lookups).
        values = self._headers.getall(name, None)
        if values is None:
            return default
        return values[0] if len(values) == 1 else ", ".join(values)

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(k.lower() for k in self._headers))

    def __len__(self) -> int:
        return len({k.lower() for k in self._headers})


class AiohttpTransport(httpx2.AsyncBaseTransport):
    """One aiohttp session (created lazily on the running loop) behind an httpx2 client."""

    def __init__(self, *, max_connections: int = 100) -> None:
        self.max_connections = max_connections
        self._session: Any = None
        self._timeout_cache: tuple[float, Any] | None = None

    def _ensure_session(self) -> Any:
        import aiohttp

        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self.max_connections, limit_per_host=0)
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,  # httpx2 decodes content-encoding itself
                cookie_jar=aiohttp.DummyCookieJar(),
            )  # no session-wide skip list: each request says what to skip (AUTO_HEADERS)
        return self._session

    @staticmethod
    def _timeout(request: httpx2.Request) -> Any:
        import aiohttp

        timeouts = request.extensions.get("timeout") or {}
        return aiohttp.ClientTimeout(
            total=None,
            connect=timeouts.get("pool"),
            sock_connect=timeouts.get("connect"),
            sock_read=timeouts.get("read"),
        )

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        import aiohttp

        session = self._ensure_session()
        body = await request.aread()
        try:
            async with session.request(
                request.method,
                _encoded(str(request.url)),
                headers=list(request.headers.multi_items()),
                skip_auto_headers=AUTO_HEADERS,
                data=body or None,
                allow_redirects=False,
                timeout=self._timeout(request),
            ) as response:
                content = await response.read()
                return httpx2.Response(
                    response.status,
                    headers=list(response.headers.items()),
                    content=content,
                    request=request,
                )
        except (asyncio.TimeoutError, aiohttp.ClientError) as exc:
            raise self._translate(exc, request) from exc

    async def send_raw(
        self,
        method: str,
        base: BaseURL,
        path: str,
        query: str,
        headers: Mapping[str, str],
        content: bytes | None,
        *,
        timeout: float,
        skip: tuple[str, ...] | None = AUTO_HEADERS,
    ) -> Answer:
        """The bulk fast path: one request from ready-made parts (the caller passes the client's
        own base URL and default headers), read into an :class:`Answer`; no httpx2 request or
        response objects are built. ``skip``: the :data:`AUTO_HEADERS` that ``headers`` lack,
        as :func:`auto_headers_missing` says (the default names them all)."""
        import aiohttp

        session = self._session
        if session is None or session.closed:
            session = self._ensure_session()
        url = base.url(path, query)
        try:
            async with session.request(
                method,
                url,
                headers=headers,
                skip_auto_headers=skip,
                data=content,
                allow_redirects=False,
                timeout=self._raw_timeout(timeout),
            ) as response:
                body = await response.read()
                return Answer(
                    response.status, _JoinedHeaders(response.headers), body, response.raw_headers
                )
        except (asyncio.TimeoutError, aiohttp.ClientError) as exc:
            raise self._translate(exc, httpx2.Request(method, str(url))) from exc

    def _raw_timeout(self, seconds: float) -> Any:
        cached = self._timeout_cache
        if cached is None or cached[0] != seconds:
            import aiohttp

            cached = (
                seconds,
                aiohttp.ClientTimeout(
                    total=None, sock_connect=min(10.0, seconds), sock_read=seconds
                ),
            )
            self._timeout_cache = cached
        return cached[1]

    @staticmethod
    def _translate(exc: BaseException, request: httpx2.Request) -> httpx2.TransportError:
        import aiohttp

        if isinstance(exc, asyncio.TimeoutError):
            return httpx2.ReadTimeout(str(exc) or "timed out", request=request)
        if isinstance(exc, aiohttp.ClientConnectorError):
            return httpx2.ConnectError(str(exc), request=request)
        if isinstance(exc, aiohttp.ServerDisconnectedError):
            return httpx2.RemoteProtocolError(str(exc) or "server disconnected", request=request)
        if isinstance(exc, (aiohttp.ClientPayloadError, aiohttp.ClientOSError)):
            return httpx2.ReadError(str(exc), request=request)
        return httpx2.NetworkError(str(exc), request=request)

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None
