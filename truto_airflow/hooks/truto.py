"""TrutoHook: the Airflow connection, a pooled httpx2 client, retries and typed Truto calls.

The connection (``conn_type="truto"``) keeps the API token in *password* and the base URL in
*host* (default ``https://api.truto.one``); extras ``integrated_account_id``, ``timeout`` and
``max_retries`` set defaults. The constructor does no I/O; the connection is read on first use.

One :class:`httpx2.Client` (and, for the bulk operator, one :class:`httpx2.AsyncClient`) is kept
per hook so calls reuse connections. Requests are built and checked once (:meth:`prepare_update`)
and sent by either client, so the sync and async paths cannot drift apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import json
import logging
import os
import ssl
import threading
import time
import unicodedata
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast
from urllib.parse import quote

import httpx2
from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException

from truto_airflow import __version__
from truto_airflow.exceptions import (
    TrutoAPIError,
    TrutoConfigError,
    TrutoInputError,
    TrutoNetworkError,
    TrutoResponseError,
    error_class_for_status,
    truncate,
)
from truto_airflow.get_provider_info import DEFAULT_BASE_URL
from truto_airflow.idempotency import validate_idempotency_key
from truto_airflow.json_values import JsonValueError, json_value
from truto_airflow.models.opportunity import OpportunityUpdate, parse_update_body
from truto_airflow.models.options import (
    ResponseShapeArgs,
    TrutoQueryArgs,
    TrutoQueryOptions,
    validate_integrated_account_id,
)
from truto_airflow.pagination import DEFAULT_MAX_PAGES, CursorWalk
from truto_airflow.query import QueryEncodingError, encode_query
from truto_airflow.redaction import common_encodings, redact, redact_data, secret_pattern
from truto_airflow.retry import RetryPolicy

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "OpportunityListOptions",
    "PreparedRequest",
    "TrutoConnectionSettings",
    "TrutoHook",
    "TrutoQueryOptions",
    "opportunity_path",
]

OPPORTUNITIES_PATH = "/unified/crm/opportunities"
DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_RETRIES = 5
#: Response formats whose body is the CRM's own, not Truto's JSON object.
_PASS_THROUGH_FORMATS = frozenset({"raw", "stream"})
#: ``decode_result``'s marker for a body that did not parse as JSON.
_NOT_JSON = object()
USER_AGENT = f"truto-airflow/{__version__}"


#: Longest opportunity id accepted. Known CRM ids are short (Salesforce 18 characters, Dynamics
#: GUIDs 36, Close ids about 50); 512 is 10x the longest, and even 512 four-byte characters
#: percent-encode to 6 KB, inside the 8 KB request line of common servers (nginx's default).
MAX_ID_LENGTH = 512
#: Characters no id contains and no transport carries faithfully: control (Cc), format (Cf:
#: zero-width, bidi overrides), surrogates (Cs: not Unicode), line/paragraph separators.
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def opportunity_path(opportunity_id: Any) -> str:
    """``/unified/crm/opportunities/{id}`` with the id as exactly one percent-encoded segment.

    Every character but ``A-Z a-z 0-9 - . _ ~`` is percent-encoded (``/``, ``?``, ``#``, ``%``
    included). ``"."`` and ``".."`` are refused: URL normalisers (yarl under aiohttp, WHATWG
    parsers, proxies) treat them, and their encoded forms ``%2E``/``%2E%2E``, as dot-segments
    and climb out of the route (aiohttp sent ``..`` as ``PATCH /unified/crm/``). The transports
    are told the URL is already encoded, so whatever is accepted arrives as exactly that id.
    """
    if isinstance(opportunity_id, bool) or not isinstance(opportunity_id, (str, int)):
        raise TrutoInputError(
            f"opportunity_id must be a string (or an integer id), got "
            f"{type(opportunity_id).__name__}"
        )
    text = str(opportunity_id)
    if not text.strip():
        raise TrutoInputError("opportunity_id is empty; check the XCom or param that provides it")
    if len(text) > MAX_ID_LENGTH:
        raise TrutoInputError(
            f"opportunity_id is {len(text)} characters long ({text[:40]!r}...); CRM ids are "
            f"at most a few dozen, the limit is {MAX_ID_LENGTH}. Check the column it comes from"
        )
    bad = next((ch for ch in text if unicodedata.category(ch) in _FORBIDDEN_CATEGORIES), None)
    if bad is not None:
        raise TrutoInputError(
            f"opportunity_id {text[:80]!r} contains control characters ({bad!r}, "
            f"U+{ord(bad):04X}); no CRM id does"
        )
    if text in {".", ".."}:
        raise TrutoInputError(
            f"opportunity_id {text!r} is not an id: as a URL path segment it means 'this' or "
            "'parent' route, so it cannot be sent as one"
        )
    return f"{OPPORTUNITIES_PATH}/{quote(text, safe='')}"


class OpportunityListOptions(ResponseShapeArgs, total=False):
    """Query options of an opportunity list read (keyword arguments of ``iter_opportunities``)."""

    #: Any other query parameter (filters, ``sort_by``, ``truto_key_by``...).
    params: Mapping[str, Any] | None
    #: Rows per page (Truto's ``limit`` query parameter).
    page_size: int | None


def _check_limit(limit: int | None) -> int | None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise TrutoInputError(f"limit must be a whole number >= 0, got {limit!r}")
    return limit


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


def _is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class TrutoConnectionSettings:
    """What the hook needs from the Airflow connection, validated once."""

    base_url: str
    token: str = field(repr=False)
    integrated_account_id: str | None
    timeout: float
    max_retries: int

    def __repr__(self) -> str:  # the token never reaches a repr, log line or traceback
        return (
            f"TrutoConnectionSettings(base_url={self.base_url!r}, "
            f"integrated_account_id={self.integrated_account_id!r}, timeout={self.timeout}, "
            f"max_retries={self.max_retries})"
        )

    @classmethod
    def from_connection(
        cls,
        *,
        host: str | None,
        password: str | None,
        extra: Mapping[str, Any],
        conn_id: str,
        port: int | str | None = None,
        login: str | None = None,
        schema: str | None = None,
    ) -> TrutoConnectionSettings:
        """Validate the connection fields; every error names the field and the fix.

        Every field that says where requests go is used or refused: a port or a URI path
        (``schema``) silently ignored would send the token somewhere the user did not mean.
        ``login`` is unused (it only feeds a hint when the token was put there by mistake).
        """
        token = (password or "").strip()
        if not token:
            hint = (
                " (a login is set: in the URI form the token goes after a colon, "
                "truto://:YOUR_TOKEN@api.truto.one)"
                if (login or "").strip()
                else ""
            )
            raise TrutoConfigError(
                f"Truto connection {conn_id!r} has no API token: put it in the connection's "
                f"password field ('API token' in the UI){hint}"
            )
        if not all(0x21 <= ord(ch) <= 0x7E for ch in token):
            # It could not travel in an Authorization header (a raw UnicodeEncodeError later).
            raise TrutoConfigError(
                f"Truto connection {conn_id!r}: the API token in the password field contains "
                "spaces, control or non-ASCII characters; paste the token exactly as Truto "
                "shows it"
            )
        try:
            return cls._checked(
                token, host=host, port=port, schema=schema, extra=extra, conn_id=conn_id
            )
        except TrutoConfigError as exc:
            # A token also pasted into another field (host, schema) must not reach the message.
            raise TrutoConfigError(redact(str(exc), token)) from None

    @classmethod
    def _checked(
        cls,
        token: str,
        *,
        host: str | None,
        port: int | str | None,
        schema: str | None,
        extra: Mapping[str, Any],
        conn_id: str,
    ) -> TrutoConnectionSettings:
        if (schema or "").strip():
            raise TrutoConfigError(
                f"Truto connection {conn_id!r} has schema {schema!r} (the path of a URI "
                "connection), which Truto does not use; put a base path in the host URL "
                "instead, e.g. https://proxy.example.com/truto"
            )
        base_url = normalise_base_url(host, port=port, conn_id=conn_id)
        account = extra.get("integrated_account_id") or None
        if account is not None:
            try:
                account = validate_integrated_account_id(
                    account, source=f"connection {conn_id!r} extra 'integrated_account_id'"
                )
            except TrutoInputError as exc:
                raise TrutoConfigError(str(exc)) from None
        timeout = _extra_number(extra, "timeout", DEFAULT_TIMEOUT, conn_id, minimum=0.001)
        retries = _extra_number(extra, "max_retries", DEFAULT_MAX_RETRIES, conn_id, minimum=0)
        if retries != int(retries) or retries > 20:
            raise TrutoConfigError(
                f"connection {conn_id!r} extra 'max_retries' must be a whole number from 0 to 20"
            )
        return cls(
            base_url=base_url,
            token=token,
            integrated_account_id=account,
            timeout=float(timeout),
            max_retries=int(retries),
        )


def normalise_base_url(
    host: str | None, *, port: int | str | None = None, conn_id: str = "truto_default"
) -> str:
    """``https://api.truto.one`` by default; plain ``http://`` only to a loopback address.

    ``port`` is the connection's port field (the URI form ``truto://:TOKEN@127.0.0.1:8765``
    puts the port there, not in the host). It is applied to the host URL; a port in both places
    must agree.
    """
    text = (host or "").strip() or DEFAULT_BASE_URL
    if "://" not in text:
        text = f"https://{text}"
    try:
        url = httpx2.URL(text)
    except httpx2.InvalidURL as exc:
        raise TrutoConfigError(
            f"connection {conn_id!r} host {text!r} is not a URL: {exc}"
        ) from None
    if url.port is not None and not 1 <= url.port <= 65535:
        raise TrutoConfigError(
            f"connection {conn_id!r} host has port {url.port}, which is not a TCP port (1 to 65535)"
        )
    if port is not None and str(port).strip() != "":
        url = _with_port(url, port, conn_id)
    if url.scheme not in {"http", "https"} or not url.host:
        raise TrutoConfigError(
            f"connection {conn_id!r} host {text!r} must be an https:// URL such as "
            f"{DEFAULT_BASE_URL}"
        )
    if url.scheme == "http" and not _is_loopback(url.host):
        raise TrutoConfigError(
            f"connection {conn_id!r} uses plain http:// to {url.host!r}; the API token would "
            "travel unencrypted. Use https:// (plain http is allowed only for loopback "
            "addresses such as a local emulator)"
        )
    if url.query or url.fragment or url.userinfo:
        raise TrutoConfigError(
            f"connection {conn_id!r} host must be a bare base URL (no query, fragment or "
            "credentials); put the token in the password field"
        )
    return str(url).rstrip("/")


def _with_port(url: httpx2.URL, port: int | str, conn_id: str) -> httpx2.URL:
    try:
        number = int(str(port).strip())
    except ValueError:
        number = -1
    if not 1 <= number <= 65535:
        raise TrutoConfigError(
            f"connection {conn_id!r} port {port!r} is not a TCP port (1 to 65535); leave it "
            "empty to use the base URL's port"
        )
    default = {"http": 80, "https": 443}.get(url.scheme)
    if url.port is not None and url.port != number:
        raise TrutoConfigError(
            f"connection {conn_id!r} gives two ports: {url.port} in the host URL and {number} "
            "in the port field; keep one of them"
        )
    return url.copy_with(port=None if number == default else number)


def _extra_number(
    extra: Mapping[str, Any], key: str, default: float, conn_id: str, *, minimum: float
) -> float:
    raw = extra.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise TrutoConfigError(
            f"connection {conn_id!r} extra {key!r} must be a number, got {raw!r}"
        ) from None
    if value < minimum or value != value:
        raise TrutoConfigError(f"connection {conn_id!r} extra {key!r} must be >= {minimum}")
    return value


def _bounded_raw_response(raw: Any, limit: int = 4000) -> Any:
    """The CRM's error body: kept structured when small, else a truncated JSON string."""
    if raw is None:
        return None
    if isinstance(raw, str):
        return truncate(raw, limit)
    dumped = json.dumps(raw, default=str)
    return raw if len(dumped) <= limit else truncate(dumped, limit)


@dataclass(frozen=True)
class PreparedRequest:
    """A validated request, ready for either client. Building it sends nothing."""

    method: str
    path: str
    params: list[tuple[str, str]]
    json_body: Any = None
    idempotency_key: str | None = None
    #: Body field names, for logs (values are never logged).
    fields: tuple[str, ...] = ()

    @property
    def query(self) -> httpx2.QueryParams:
        """The encoded query, in order."""
        return httpx2.QueryParams(
            cast("list[tuple[str, str | int | float | bool | None]]", self.params)
        )

    @property
    def headers(self) -> dict[str, str]:
        """Per-request headers (the bearer token is a client default, never stored here)."""
        headers: dict[str, str] = {}
        if self.idempotency_key:
            headers["Idempotency-Key"] = self.idempotency_key
        return headers

    @property
    def content(self) -> bytes | None:
        """The JSON body as bytes (compact, UTF-8), or ``None`` for body-less requests."""
        if self.json_body is None:
            return None
        return json.dumps(self.json_body, separators=(",", ":"), ensure_ascii=False).encode()

    @property
    def what(self) -> str:
        """``METHOD /path`` for logs and errors (no query string: it may hold customer data)."""
        return f"{self.method} {self.path}"

    def url(self, base_url: httpx2.URL | str) -> str:
        """The absolute URL under ``base_url``: the same bytes on the wire as
        ``client.request(method, path, params=query)``, built once (merging base URL and params
        in httpx2 parses the URL three times, a measurable share of CPU per row in bulk)."""
        url = f"{str(base_url).rstrip('/')}{self.path}"
        query = str(self.query)
        return f"{url}?{query}" if query else url


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


class TrutoHook(BaseHook):
    """Talks to Truto's API with the token and defaults of one Airflow connection.

    :param truto_conn_id: the ``truto`` connection to use.
    :param timeout: read timeout in seconds; overrides the connection's ``timeout`` extra.
    :param max_retries: overrides the connection's ``max_retries`` extra.
    :param retry_policy: full control over retries (waits, caps, sleep functions for tests).
    :param transport: / ``async_transport``: custom httpx2 transports (tests use MockTransport).
    """

    conn_name_attr = "truto_conn_id"
    default_conn_name = "truto_default"
    conn_type = "truto"
    hook_name = "Truto"

    def __init__(
        self,
        truto_conn_id: str = default_conn_name,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
        retry_policy: RetryPolicy | None = None,
        transport: httpx2.BaseTransport | None = None,
        async_transport: httpx2.AsyncBaseTransport | None = None,
        max_connections: int = 100,
    ) -> None:
        super().__init__()
        self.truto_conn_id = truto_conn_id
        self._timeout_override = timeout
        self._max_retries_override = max_retries
        self._retry_policy_override = retry_policy
        self._transport = transport
        self._async_transport = async_transport
        self._max_connections = max_connections
        self._client: httpx2.Client | None = None
        self._async_client: httpx2.AsyncClient | None = None
        self._async_loop: asyncio.AbstractEventLoop | None = None
        #: Clients in use by attempts in flight (see _lease). Threads share the sync client,
        #: so its leases are locked; the async client belongs to one event loop's thread.
        self._lock = threading.Lock()
        self._leases: _Leases[httpx2.Client] = _Leases()
        self._aleases: _Leases[httpx2.AsyncClient] = _Leases()
        self._account_cache: dict[str, dict[str, Any]] = {}

    # -- connection ---------------------------------------------------------------------------

    @cached_property
    def settings(self) -> TrutoConnectionSettings:
        """The validated connection (read once, on first use)."""
        conn = self._get_connection()
        if conn.conn_type and conn.conn_type != self.conn_type:
            self.log.warning(
                "Connection %r has conn_type %r, expected 'truto'",
                self.truto_conn_id,
                conn.conn_type,
            )
        settings = TrutoConnectionSettings.from_connection(
            host=conn.host,
            port=conn.port,
            login=conn.login,
            schema=conn.schema,
            password=conn.password,
            extra=conn.extra_dejson,
            conn_id=self.truto_conn_id,
        )
        from airflow.sdk.log import mask_secret

        for variant in common_encodings(settings.token):  # task logs, in whatever form
            mask_secret(variant)
        overrides: dict[str, Any] = {}
        if self._timeout_override is not None:
            if self._timeout_override <= 0:
                raise TrutoConfigError("timeout must be a positive number of seconds")
            overrides["timeout"] = float(self._timeout_override)
        if self._max_retries_override is not None:
            if not 0 <= self._max_retries_override <= 20:
                raise TrutoConfigError("max_retries must be from 0 to 20")
            overrides["max_retries"] = int(self._max_retries_override)
        return replace(settings, **overrides) if overrides else settings

    def _get_connection(self) -> Any:
        """The Airflow connection; a missing one is a configuration error (no task retries)."""
        try:
            return self.get_connection(self.truto_conn_id)
        except AirflowNotFoundException:
            conn_id = self.truto_conn_id
            env = f"AIRFLOW_CONN_{conn_id.upper()}"
            default = (
                ""
                if conn_id == self.default_conn_name
                else f" (the default conn id {self.default_conn_name!r} reads "
                "AIRFLOW_CONN_TRUTO_DEFAULT)"
            )
            raise TrutoConfigError(
                f"Airflow connection {conn_id!r} is not defined. Create it with conn type "
                f"'truto' (UI: Admin > Connections; CLI: airflow connections add {conn_id} "
                f"--conn-type truto --conn-password YOUR_TOKEN), or set the environment variable "
                f'{env}=\'{{"conn_type": "truto", "password": "YOUR_TOKEN"}}\'{default}'
            ) from None

    @cached_property
    def retry_policy(self) -> RetryPolicy:
        """The policy in force: an explicit one, else the connection's ``max_retries``."""
        if self._retry_policy_override is not None:
            return self._retry_policy_override
        return RetryPolicy(max_retries=self.settings.max_retries)

    def resolve_account(self, integrated_account_id: str | None) -> str:
        """The argument, else the connection's default, as a canonical UUID string."""
        if integrated_account_id is not None and str(integrated_account_id).strip():
            return validate_integrated_account_id(integrated_account_id)
        default = self.settings.integrated_account_id
        if default is None:
            raise TrutoInputError(
                "integrated_account_id is required: pass it to the task/hook call, or set "
                f"'integrated_account_id' in the extra of connection {self.truto_conn_id!r}"
            )
        return default

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
        _quiet_httpx_logger()
        if (
            self._async_client is None
            or self._async_client.is_closed
            or self._async_loop is not loop
        ):
            limits = httpx2.Limits(
                max_connections=self._max_connections,
                max_keepalive_connections=self._max_connections,
            )
            self._async_client = httpx2.AsyncClient(
                transport=_AsyncKeepOpen(self._async_transport) if self._async_transport else None,
                limits=limits,
                **self._client_kwargs(),
            )
            self._async_loop = loop
        return self._async_client

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

    def __enter__(self) -> TrutoHook:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- building requests --------------------------------------------------------------------

    def prepare(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        idempotency_key: str | None = None,
        fields: Sequence[str] = (),
    ) -> PreparedRequest:
        """Encode the query with Truto's convention; any encoding problem is raised here."""
        if not path.startswith("/"):
            raise TrutoInputError(f"path must start with '/', got {path!r}")
        try:
            pairs = encode_query(params or {})
        except QueryEncodingError as exc:
            raise TrutoInputError(str(exc)) from None
        if json_body is not None:
            try:
                json_body = json_value(json_body, ("json",), free_form=False)
            except JsonValueError as exc:
                raise TrutoInputError(f"request body: {exc}") from None
        if idempotency_key is not None:
            idempotency_key = validate_idempotency_key(idempotency_key)
        return PreparedRequest(
            method=method.upper(),
            path=path,
            params=pairs,
            json_body=json_body,
            idempotency_key=idempotency_key,
            fields=tuple(fields),
        )

    def prepare_update(
        self,
        opportunity_id: str,
        body: Mapping[str, Any] | OpportunityUpdate,
        *,
        idempotency_key: str | None = None,
        **options: Unpack[TrutoQueryArgs],
    ) -> PreparedRequest:
        """Validate everything about an opportunity update and build the PATCH; sends nothing.

        ``options`` are Truto's query options (:class:`TrutoQueryOptions`)."""
        return self._prepare_update(
            opportunity_id, body, TrutoQueryOptions(**options), idempotency_key
        )

    def _prepare_update(
        self,
        opportunity_id: str,
        body: Mapping[str, Any] | OpportunityUpdate,
        options: TrutoQueryOptions,
        idempotency_key: str | None,
    ) -> PreparedRequest:
        path = opportunity_path(opportunity_id)
        update = parse_update_body(body)
        payload = update.to_body()
        if not payload:
            raise TrutoInputError(
                f"the update for opportunity {opportunity_id!r} has no fields; give at least one "
                "field (or skip the row upstream)"
            )
        return self.prepare(
            "PATCH",
            path,
            params=self._query(options),
            json_body=payload,
            idempotency_key=f"truto-airflow-{uuid.uuid4()}"
            if idempotency_key is None
            else idempotency_key,
            fields=update.field_names,
        )

    def _query(
        self, options: TrutoQueryOptions, extra: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The unified query of ``options``, its account resolved against the connection."""
        return options.query(self.resolve_account(options.integrated_account_id), extra=extra)

    # -- responses ----------------------------------------------------------------------------

    def _raise_for_status(
        self, response: httpx2.Response, request: PreparedRequest, attempts: int = 1
    ) -> None:
        if response.is_success:
            return
        raise self._api_error(response, request, attempts)

    def _api_error(
        self, response: httpx2.Response, request: PreparedRequest, attempts: int = 1
    ) -> TrutoAPIError:
        """Turn Truto's error body into the matching exception (text fallback, truncated).

        Everything kept (parsed body, text fallback, headers) is redacted before it is stored or
        cut, so no part of the token survives in any encoding.
        """
        raw_text = response.text
        data: Any = None
        try:
            data = json.loads(raw_text) if raw_text else None
        except json.JSONDecodeError:
            data = None
        text = self._redact(raw_text)
        body = self._redact_data(data) if isinstance(data, dict) else {}
        message = body.get("message")
        if not isinstance(message, str) or not message:
            message = truncate(text.strip()) if not body else ""
        raw = _bounded_raw_response(body.get("raw_response"))
        insight = body.get("truto_error_insight")
        cls = error_class_for_status(response.status_code)
        return cls(
            status_code=response.status_code,
            error=body.get("error")
            if isinstance(body.get("error"), str)
            else self._redact(response.reason_phrase),  # the status line is an echo too
            message=truncate(message),
            is_remote_error=bool(body.get("truto_is_remote_error", False)),
            raw_response=raw,
            error_insight=insight if isinstance(insight, dict) else None,
            headers=self._redacted_headers(response),
            method=request.method,
            path=request.path,
            attempts=attempts,
        )

    def _redact(self, text: str) -> str:
        """``text`` with the token masked in any encoding (:mod:`truto_airflow.redaction`)."""
        return redact(text, self.settings.token)

    def _redact_data(self, data: Any) -> Any:
        """Parsed JSON with the token masked in every key and string."""
        return redact_data(data, self.settings.token)

    def decode(self, response: httpx2.Response) -> Any:
        """The parsed body: JSON as Python objects, ``{}`` for an empty body, else text.

        The token is masked first: a 2xx body is the operator's XCom return value and feeds
        dry-run plans, and a server may echo the token back in it.
        """
        if not response.content:
            return {}
        text = response.text
        echoed = secret_pattern(self.settings.token).search(text) is not None
        ctype = response.headers.get("content-type", "")
        if "json" in ctype or not ctype:
            try:
                data = json.loads(text)
            except json.JSONDecodeError:
                pass
            else:
                return self._redact_data(data) if echoed else data
        return self._redact(text) if echoed else text

    def decode_result(self, response: httpx2.Response, request: PreparedRequest) -> Any:
        """The body of a 2xx that must be Truto's JSON object, else :class:`TrutoResponseError`.

        A proxy's HTML login page, a truncated body, or a JSON list or string is not a
        successful update, whatever the status says (an empty ``204 No Content`` is ``{}``).
        With ``truto_response_format`` ``raw`` or ``stream`` the body is the CRM's own, so it is
        returned as :meth:`decode` reads it. The token is masked as in :meth:`decode`.
        """
        self.check_result(response, request)
        return self.decode(response)

    def check_result(self, response: httpx2.Response, request: PreparedRequest) -> None:
        """Raise :class:`TrutoResponseError` unless this 2xx carries what the endpoint returns
        (the rule of :meth:`decode_result`, without decoding: the bulk engine's per-row check)."""
        fmt = next((v for k, v in request.params if k == "truto_response_format"), None)
        if fmt in _PASS_THROUGH_FORMATS:
            return
        if response.status_code == 204 and not response.content:
            return  # "No Content" says so on purpose (an empty 200 does not)
        data: Any = _NOT_JSON
        if response.content:
            try:
                data = json.loads(response.content)
            except ValueError:  # invalid JSON or invalid UTF-8
                data = _NOT_JSON
        if not isinstance(data, dict):
            raise self._response_error(response, request, data)

    def _response_error(
        self, response: httpx2.Response, request: PreparedRequest, data: Any
    ) -> TrutoResponseError:
        ctype = response.headers.get("content-type") or "no content type"
        if not response.content:
            what = "an empty body"
        elif data is _NOT_JSON:
            what = "a body that is not valid JSON (truncated, or not JSON at all)"
        else:
            what = f"a JSON {type(data).__name__} instead of an object"
        text = " ".join(self._redact_safe(response.text).split())
        snippet = truncate(text, 120)
        return TrutoResponseError(
            status_code=response.status_code,
            error="unexpected_response",
            message=(
                f"Truto answered {response.status_code} with {what} ({ctype}, "
                f"{len(response.content)} bytes: {snippet!r}); not treated as a success, the "
                "write may or may not have been applied. Check that the connection's host is "
                "Truto's API, not a proxy or login page"
            ),
            headers=self._redacted_headers(response),
            method=request.method,
            path=request.path,
        )

    def _redacted_headers(self, response: httpx2.Response) -> dict[str, str]:
        """Response headers (lower-case names) with the token masked, to keep on an exception."""
        return {self._redact(k.lower()): self._redact(v) for k, v in response.headers.items()}

    def _network_error(
        self, exc: Exception, request: PreparedRequest, attempts: int
    ) -> TrutoNetworkError:
        detail = self._redact(str(exc)) or type(exc).__name__
        return TrutoNetworkError(
            f"Truto {request.what} got no answer after {attempts} attempt(s): "
            f"{type(exc).__name__}: {truncate(detail, 200)}",
            method=request.method,
            path=request.path,
            attempts=attempts,
        )

    # -- sending (sync) -----------------------------------------------------------------------

    def send(self, request: PreparedRequest, *, retry: bool = True) -> httpx2.Response:
        """Send with retries; return the successful response or raise a Truto error."""
        policy = self.retry_policy if retry else replace(self.retry_policy, max_retries=0)
        attempts = 0
        started = time.monotonic()
        try:
            for attempt in policy.retrying(self.log, request.what):
                with attempt, self._lease() as client:
                    attempts = attempt.retry_state.attempt_number
                    response = client.request(
                        request.method,
                        request.path,
                        params=request.query,
                        content=request.content,
                        headers=request.headers,
                    )
                    self._raise_for_status(response, request, attempts)
        except TrutoAPIError:
            raise
        except httpx2.HTTPError as exc:
            raise self._network_error(exc, request, attempts) from None
        self.log.debug(
            "Truto %s -> %s in %.3fs (%d attempt(s))",
            request.what,
            response.status_code,
            time.monotonic() - started,
            attempts,
        )
        return response

    @contextlib.contextmanager
    def stream(self, request: PreparedRequest) -> Iterator[httpx2.Response]:
        """Send and yield the response unread, for ``truto_response_format=stream``.

        Retries cover reaching a 2xx status; once the body starts flowing it is the caller's.
        """
        attempts = 0
        with contextlib.ExitStack() as held:  # the successful attempt's client lease
            try:
                for attempt in self.retry_policy.retrying(self.log, request.what):
                    with attempt, contextlib.ExitStack() as lease:
                        attempts = attempt.retry_state.attempt_number
                        client = lease.enter_context(self._lease())
                        response = client.send(
                            client.build_request(
                                request.method,
                                request.path,
                                params=request.query,
                                content=request.content,
                                headers=request.headers,
                            ),
                            stream=True,
                        )
                        if not response.is_success:
                            response.read()
                            response.close()
                            self._raise_for_status(response, request, attempts)
                        held.enter_context(lease.pop_all())
            except TrutoAPIError:
                raise
            except httpx2.HTTPError as exc:
                raise self._network_error(exc, request, attempts) from None
            try:
                yield response
            finally:
                response.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        idempotency_key: str | None = None,
    ) -> Any:
        """Call any Truto endpoint; return the parsed body. Query uses Truto's encoding."""
        prepared = self.prepare(
            method, path, params=params, json_body=json, idempotency_key=idempotency_key
        )
        return self.decode(self.send(prepared))

    # -- typed calls --------------------------------------------------------------------------

    def update_opportunity(
        self,
        opportunity_id: str,
        body: Mapping[str, Any] | OpportunityUpdate,
        *,
        idempotency_key: str | None = None,
        **options: Unpack[TrutoQueryArgs],
    ) -> Any:
        """``PATCH /unified/crm/opportunities/{id}``; returns the updated opportunity.

        Everything is validated before sending. One ``Idempotency-Key`` (yours, or a fresh one)
        is sent on every attempt, so a retry after a lost answer replays instead of re-applying.
        ``options`` are Truto's query options (:class:`TrutoQueryOptions`).
        """
        prepared = self._prepare_update(
            opportunity_id, body, TrutoQueryOptions(**options), idempotency_key
        )
        return self.decode_result(self.send(prepared), prepared)

    def get_opportunity(self, opportunity_id: str, **options: Unpack[TrutoQueryArgs]) -> Any:
        """``GET /unified/crm/opportunities/{id}``: read an opportunity back."""
        prepared = self._prepare_get(opportunity_id, TrutoQueryOptions(**options))
        return self.decode_result(self.send(prepared), prepared)

    def _prepare_get(self, opportunity_id: str, options: TrutoQueryOptions) -> PreparedRequest:
        return self.prepare("GET", opportunity_path(opportunity_id), params=self._query(options))

    def opportunity_list_query(
        self,
        integrated_account_id: str | None = None,
        **options: Unpack[OpportunityListOptions],
    ) -> dict[str, Any]:
        """The query of ``GET /unified/crm/opportunities`` (validated; sends nothing)."""
        page_size = options.get("page_size")
        if page_size is not None and (
            isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1
        ):
            raise TrutoInputError(f"page_size must be a whole number >= 1, got {page_size!r}")
        shape: dict[str, Any] = {k: options.get(k) for k in ResponseShapeArgs.__annotations__}
        query_options = TrutoQueryOptions(integrated_account_id=integrated_account_id, **shape)
        extra = {**(options.get("params") or {}), **({"limit": page_size} if page_size else {})}
        return self._query(query_options, extra)

    def iter_opportunities(
        self,
        integrated_account_id: str | None = None,
        *,
        limit: int | None = None,
        max_pages: int = DEFAULT_MAX_PAGES,
        **options: Unpack[OpportunityListOptions],
    ) -> Iterator[dict[str, Any]]:
        """Every opportunity of an account, as dicts, reading ``next_cursor`` pages lazily.

        ``hook.iter_opportunities(account, page_size=100, ignore_remote_data=True)``

        :param integrated_account_id: defaults to the connection's ``integrated_account_id``.
        :param limit: stop after this many opportunities (no page is read beyond them).
        :param max_pages: pages this walk may read; a list still going after that, a cursor
            cycle (``A -> B -> A``) or a page that is not a list envelope raises
            :class:`~truto_airflow.exceptions.TrutoPaginationError` (the task fails, no retry).
            Items of every page read before the error have been yielded.
        :param options: the query (:class:`OpportunityListOptions`): ``response_format``,
            ``ignore_remote_data``, ``exclude_fields``, ``remote_query`` (validated as for a
            single read), ``params`` (any other query parameter: filters, ``sort_by``...) and
            ``page_size`` (rows per page: Truto's ``limit`` query parameter).

        Each page is fetched with the hook's retries. Validation errors surface on the first
        ``next()``, before any request.
        """
        query = self.opportunity_list_query(integrated_account_id, **options)
        items = self.paginate(OPPORTUNITIES_PATH, query, max_pages=max_pages)
        # islice stops at ``limit`` without asking for one more item (so no extra page).
        yield from itertools.islice(items, _check_limit(limit))

    def list_opportunities(
        self,
        *,
        integrated_account_id: str | None = None,
        limit: int | None = None,
        ignore_remote_data: bool | None = None,
        remote_query: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Older spelling of :meth:`iter_opportunities`; here ``limit`` is the page size."""
        return self.iter_opportunities(
            integrated_account_id=integrated_account_id,
            ignore_remote_data=ignore_remote_data,
            remote_query=remote_query,
            params=params,
            page_size=limit,
        )

    def paginate(
        self, path: str, query: Mapping[str, Any], *, max_pages: int = DEFAULT_MAX_PAGES
    ) -> Iterator[dict[str, Any]]:
        """The items of every page of a Truto list (see :class:`CursorWalk` for the limits)."""
        walk = CursorWalk(f"GET {path}", query, max_pages=max_pages)
        while (page_query := walk.next_query()) is not None:
            page = self.decode(self.send(self.prepare("GET", path, params=page_query)))
            yield from walk.take(page)

    def get_integrated_account(self, integrated_account_id: str | None = None) -> dict[str, Any]:
        """``GET /integrated-account/{id}`` (integration, status, is_sandbox), cached per hook."""
        account = self.resolve_account(integrated_account_id)
        if account not in self._account_cache:
            prepared = self.prepare("GET", f"/integrated-account/{quote(account, safe='')}")
            self._account_cache[account] = self.decode_result(self.send(prepared), prepared)
        return self._account_cache[account]

    def test_connection(self) -> tuple[bool, str]:
        """Check the token with a read-only call (never a write); ``(ok, message)`` for the UI."""
        try:
            account = self.settings.integrated_account_id
            if account:
                data = self.get_integrated_account(account)
                integration = data.get("integration") if isinstance(data, dict) else None
                name = integration.get("name") if isinstance(integration, dict) else None
                status = data.get("status") if isinstance(data, dict) else None
                return True, (
                    f"Connected to Truto; integrated account {account} is {name or 'unknown'} "
                    f"({status or 'status unknown'})"
                )
            self.request("GET", "/integrated-account", params={"limit": 1})
            return True, "Connected to Truto (token accepted)"
        except Exception as exc:
            return False, self._redact_safe(str(exc))

    def _redact_safe(self, text: str) -> str:
        try:
            return self._redact(text)
        except Exception:
            return text

    # -- sending (async) ----------------------------------------------------------------------

    async def asend(self, request: PreparedRequest, *, retry: bool = True) -> httpx2.Response:
        """The asyncio twin of :meth:`send` (same policy, same errors)."""
        policy = self.retry_policy if retry else replace(self.retry_policy, max_retries=0)
        attempts = 0
        try:
            async for attempt in policy.async_retrying(self.log, request.what):
                with attempt:
                    attempts = attempt.retry_state.attempt_number
                    client = self.lease_async_client()
                    try:
                        response = await client.request(
                            request.method,
                            request.path,
                            params=request.query,
                            content=request.content,
                            headers=request.headers,
                        )
                    finally:
                        await self.return_async_client(client)
                    self._raise_for_status(response, request, attempts)
        except TrutoAPIError:
            raise
        except httpx2.HTTPError as exc:
            raise self._network_error(exc, request, attempts) from None
        return response

    async def aupdate_opportunity(
        self,
        opportunity_id: str,
        body: Mapping[str, Any] | OpportunityUpdate,
        *,
        idempotency_key: str | None = None,
        **options: Unpack[TrutoQueryArgs],
    ) -> Any:
        """Async :meth:`update_opportunity`."""
        prepared = self._prepare_update(
            opportunity_id, body, TrutoQueryOptions(**options), idempotency_key
        )
        return self.decode_result(await self.asend(prepared), prepared)

    async def aget_opportunity(
        self,
        opportunity_id: str,
        *,
        integrated_account_id: str | None = None,
        ignore_remote_data: bool | None = None,
    ) -> Any:
        """Async :meth:`get_opportunity`."""
        options = TrutoQueryOptions(
            integrated_account_id=integrated_account_id, ignore_remote_data=ignore_remote_data
        )
        prepared = self._prepare_get(opportunity_id, options)
        return self.decode_result(await self.asend(prepared), prepared)

    async def aget_integrated_account(
        self, integrated_account_id: str | None = None
    ) -> dict[str, Any]:
        """Async :meth:`get_integrated_account` (same per-hook cache)."""
        account = self.resolve_account(integrated_account_id)
        if account not in self._account_cache:
            prepared = self.prepare("GET", f"/integrated-account/{quote(account, safe='')}")
            self._account_cache[account] = self.decode_result(await self.asend(prepared), prepared)
        return self._account_cache[account]

    async def apaginate_pages(
        self, path: str, query: Mapping[str, Any], *, max_pages: int = DEFAULT_MAX_PAGES
    ) -> AsyncGenerator[list[dict[str, Any]], None]:
        """Async: each page's items of a Truto list, page by page (same walk as :meth:`paginate`).

        Pages let a caller stop on what it has seen so far (the data-safety list read does).
        """
        walk = CursorWalk(f"GET {path}", query, max_pages=max_pages)
        while (page_query := walk.next_query()) is not None:
            prepared = self.prepare("GET", path, params=page_query)
            yield walk.take(self.decode(await self.asend(prepared)))

    async def aiter_opportunities(
        self,
        integrated_account_id: str | None = None,
        *,
        limit: int | None = None,
        max_pages: int = DEFAULT_MAX_PAGES,
        **options: Unpack[OpportunityListOptions],
    ) -> AsyncGenerator[dict[str, Any], None]:
        """Async :meth:`iter_opportunities` (same arguments, same limits and errors)."""
        if _check_limit(limit) == 0:
            return
        query = self.opportunity_list_query(integrated_account_id, **options)
        count = 0
        async for items in self.apaginate_pages(OPPORTUNITIES_PATH, query, max_pages=max_pages):
            for item in items:
                yield item
                count += 1
                if limit is not None and count >= limit:
                    return

    @contextlib.asynccontextmanager
    async def async_session(self) -> AsyncIterator[TrutoHook]:
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

    def api_error(
        self, response: httpx2.Response, request: PreparedRequest, attempts: int = 1
    ) -> TrutoAPIError:
        """The typed error (status, message, insight, headers) for a non-2xx response."""
        return self._api_error(response, request, attempts)

    def redact_text(self, text: str) -> str:
        """``text`` with the API token masked (safe to log or store)."""
        return self._redact_safe(text)
