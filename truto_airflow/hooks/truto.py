"""TrutoHook: the Airflow connection, retries and typed Truto calls.

Split the httpx way; this module is the hook itself (a private request path, short public
methods, like Airflow's dbt-cloud hook). Its parts live beside it:

* :mod:`~truto_airflow.hooks._connection`: the connection's settings (base URL, port rules, token);
* :mod:`~truto_airflow.hooks._wire`: :class:`PreparedRequest`, the id rule, answers and errors;
* :mod:`~truto_airflow.hooks._clients`: the pooled clients and their leases.

The constructor does no I/O; the connection is read on first use. Requests are built and
checked once (:meth:`TrutoHook.prepare_update`) and sent by either client, so the sync and
async paths cannot drift apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
from collections.abc import AsyncGenerator, Iterator, Mapping
from dataclasses import replace
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx2
from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException

from truto_airflow.exceptions import TrutoAPIError, TrutoConfigError
from truto_airflow.hooks._answers import _ResponseMapping

# The hook's parts, re-exported here (the public import path stays truto_airflow.hooks.truto).
from truto_airflow.hooks._clients import USER_AGENT, _ClientLifecycle, _Leases
from truto_airflow.hooks._connection import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    TrutoConnectionSettings,
    normalise_base_url,
)
from truto_airflow.hooks._wire import (
    MAX_ID_LENGTH,
    OPPORTUNITIES_PATH,
    PreparedRequest,
    RequestArgs,
    UpdateArgs,
    _RequestBuilding,
    opportunity_path,
)
from truto_airflow.models.opportunity import OpportunityUpdate
from truto_airflow.models.options import (
    OpportunityListOptions,
    TrutoQueryArgs,
    TrutoQueryOptions,
    check_limit,
)
from truto_airflow.pagination import DEFAULT_MAX_PAGES, CursorWalk
from truto_airflow.redaction import common_encodings
from truto_airflow.retry import RetryPolicy

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_TIMEOUT",
    "MAX_ID_LENGTH",
    "OPPORTUNITIES_PATH",
    "USER_AGENT",
    "OpportunityListOptions",
    "PreparedRequest",
    "TrutoConnectionSettings",
    "TrutoHook",
    "TrutoQueryOptions",
    "normalise_base_url",
    "opportunity_path",
]


class TrutoHook(_ClientLifecycle, _RequestBuilding, _ResponseMapping, BaseHook):
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
                    response = client.send(request.build(client))
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

        Retries cover reaching a 2xx status; once the body starts flowing it is the caller's (a
        body that breaks off is a :class:`TrutoNetworkError`, not retried: part was consumed).
        """
        attempts = 0
        with contextlib.ExitStack() as held:  # the successful attempt's client lease
            try:
                for attempt in self.retry_policy.retrying(self.log, request.what):
                    with attempt, contextlib.ExitStack() as lease:
                        attempts = attempt.retry_state.attempt_number
                        client = lease.enter_context(self._lease())
                        response = client.send(request.build(client), stream=True)
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
            except httpx2.HTTPError as exc:  # the body broke off while the caller read it
                raise self._network_error(exc, request, attempts) from None
            finally:
                response.close()

    def request(
        self, method: str, path: str, *, json: Any = None, **args: Unpack[RequestArgs]
    ) -> Any:
        """Call any Truto endpoint; return the parsed body. Query uses Truto's encoding."""
        return self.decode(self.send(self.prepare(method, path, json_body=json, **args)))

    # -- typed calls --------------------------------------------------------------------------

    def update_opportunity(
        self,
        opportunity_id: str,
        body: Mapping[str, Any] | OpportunityUpdate,
        **args: Unpack[UpdateArgs],
    ) -> Any:
        """``PATCH /unified/crm/opportunities/{id}``; returns the updated opportunity.

        Everything is validated before sending (:meth:`prepare_update`, which takes the same
        arguments). One ``Idempotency-Key`` (yours, one derived from a ``RunIdentity``, or a
        fresh one) is sent on every attempt, so a retry after a lost answer replays instead of
        re-applying.
        """
        prepared = self.prepare_update(opportunity_id, body, **args)
        return self.decode_result(self.send(prepared), prepared)

    def get_opportunity(self, opportunity_id: str, **options: Unpack[TrutoQueryArgs]) -> Any:
        """``GET /unified/crm/opportunities/{id}``: read an opportunity back."""
        prepared = self._prepare_get(opportunity_id, TrutoQueryOptions(**options))
        return self.decode_result(self.send(prepared), prepared)

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
        yield from itertools.islice(items, check_limit(limit))

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
                        response = await client.send(request.build(client))
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
        **args: Unpack[UpdateArgs],
    ) -> Any:
        """Async :meth:`update_opportunity`."""
        prepared = self.prepare_update(opportunity_id, body, **args)
        return self.decode_result(await self.asend(prepared), prepared)

    async def aget_opportunity(self, opportunity_id: str, **options: Unpack[TrutoQueryArgs]) -> Any:
        """Async :meth:`get_opportunity` (the same options)."""
        prepared = self._prepare_get(opportunity_id, TrutoQueryOptions(**options))
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
        if check_limit(limit) == 0:
            return
        query = self.opportunity_list_query(integrated_account_id, **options)
        count = 0
        async for items in self.apaginate_pages(OPPORTUNITIES_PATH, query, max_pages=max_pages):
            for item in items:
                yield item
                count += 1
                if limit is not None and count >= limit:
                    return
