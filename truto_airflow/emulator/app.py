"""The emulator's ASGI app: Truto's documented behaviour, not any particular client's.

Routes (bearer token required on all of them, admin routes included):

* ``GET|PATCH /unified/crm/opportunities/{id}``, ``GET /unified/crm/opportunities``,
  ``GET /unified/crm/stages``, ``GET /unified/crm/users`` (list envelope, cursor pagination,
  ``truto_key_by``);
* ``GET /integrated-account/{id}`` and ``GET /integrated-account`` (no faults, no account param);
* ``/_emulator/...`` admin routes used by :class:`~truto_airflow.emulator.server.EmulatorHandle`.

Assumptions where Truto documents nothing (see docs/emulator.md):

* ``Idempotency-Key`` reuse with a *different* body answers 409; replays carry
  ``truto-idempotent-replay: true``; only non-5xx, non-429 outcomes are cached; the cache is
  keyed by integrated account + request path + key and lives until ``reset()``.
* responses carry only the fields the docs' response table lists for the account's CRM
  (everything for CRMs without a table); ``normalized`` has each of them (null if unset);
* a non-UUID ``integrated_account_id`` is a 400.
* ``stream`` sends the unified JSON in several chunks (chunked transfer encoding).
* Injected 5xx happen before the write; dropped connections alternate before/after it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from truto_airflow.emulator.config import EmulatorConfig
from truto_airflow.emulator.errors import ApiError, error_body
from truto_airflow.emulator.faults import Fate, RateVerdict
from truto_airflow.emulator.seed import SeedAccount
from truto_airflow.emulator.state import (
    RECORDED_HEADERS,
    CachedResponse,
    EmulatorState,
    fingerprint,
)
from truto_airflow.emulator.vendor import raw_error, raw_response
from truto_airflow.emulator.writes import apply_update, validate_update
from truto_airflow.query import QueryEncodingError, decode_query

__all__ = ["DroppedConnection", "create_app"]

OPPORTUNITIES = "/unified/crm/opportunities"
FORMATS = ("unified", "raw", "normalized", "stream")
_UUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


class DroppedConnection(Exception):
    """Raised mid-body to make the server abort the connection (an injected fault)."""


class _DropFilter(logging.Filter):
    """Keep uvicorn from logging our deliberate aborts as application errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, DroppedConnection)


logging.getLogger("uvicorn.error").addFilter(_DropFilter())


def _dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def json_response(status: int, data: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(_dumps(data), status, headers=headers, media_type="application/json")


class DroppingResponse(Response):
    """Announces a Content-Length, sends part of the body, then aborts the connection."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        await send({"type": "http.response.body", "body": self.body[:8], "more_body": True})
        raise DroppedConnection("injected dropped connection")


def _drop(body: bytes) -> Response:
    padded = body if len(body) > 16 else body + b" " * 16
    return DroppingResponse(padded, 200, media_type="application/json")


@dataclass
class Call:
    """Per-request facts collected for the request log."""

    request: Request
    query: dict[str, Any] = field(default_factory=dict)
    account: SeedAccount | None = None
    opportunity_id: str | None = None
    body: Any = None
    applied: bool = False
    replay: bool = False
    fault: str | None = None
    rate: RateVerdict | None = None
    generation: int = 0


@dataclass(frozen=True)
class Options:
    """The Truto-specific query parameters shared by every unified route."""

    fmt: str
    ignore_remote_data: bool
    exclude: frozenset[str]
    remote_query: dict[str, Any] | None


def _bool_param(query: dict[str, Any], name: str) -> bool:
    value = query.get(name)
    if value is None or value in ("false", "0", ""):
        return False
    if value in ("true", "1"):
        return True
    raise ApiError(400, f"Invalid query parameter '{name}': expected true or false.")


def _options(query: dict[str, Any]) -> Options:
    fmt = query.get("truto_response_format", "unified")
    if fmt not in FORMATS:
        raise ApiError(
            400,
            f"Invalid truto_response_format {fmt!r}: expected one of {', '.join(FORMATS)}.",
        )
    exclude = query.get("truto_exclude_fields", [])
    if isinstance(exclude, str):  # tolerated: the comma-separated form of the vendor's notes
        exclude = [part for part in exclude.split(",") if part]
    if not isinstance(exclude, list) or not all(isinstance(x, str) for x in exclude):
        raise ApiError(400, "Invalid query parameter 'truto_exclude_fields': expected strings.")
    remote_query = query.get("remote_query")
    if remote_query is not None and not isinstance(remote_query, dict):
        raise ApiError(400, "Invalid query parameter 'remote_query': expected an object.")
    return Options(
        fmt=fmt,
        ignore_remote_data=_bool_param(query, "truto_ignore_remote_data"),
        exclude=frozenset(exclude),
        remote_query=remote_query,
    )


def _shape(
    item: dict[str, Any], opts: Options, documented: frozenset[str] = frozenset()
) -> dict[str, Any]:
    if opts.remote_query is not None and isinstance(item.get("remote_data"), dict):
        item["remote_data"] = {**item["remote_data"], "remote_query": opts.remote_query}
    if opts.fmt == "normalized":
        item = {name: item.get(name) for name in sorted({*documented, *item})}
    if opts.ignore_remote_data:
        item.pop("remote_data", None)
    for name in opts.exclude:
        item.pop(name, None)
    return item


async def _stream(payload: bytes, parts: int = 4) -> AsyncIterator[bytes]:
    size = max(1, -(-len(payload) // parts))
    for start in range(0, len(payload), size):
        yield payload[start : start + size]
        await asyncio.sleep(0)  # let each chunk go out as its own write


def _render(
    state: EmulatorState, account: SeedAccount, record: dict[str, Any], opts: Options, status: int
) -> Response:
    if opts.fmt == "raw":
        return json_response(status, raw_response(account.integration, record))
    body = _dumps(_shape(state.view(account, record), opts, state.documented_fields(account)))
    if opts.fmt == "stream":
        return StreamingResponse(_stream(body), status, media_type="application/json")
    return Response(body, status, media_type="application/json")


def _raw_id(request: Request, prefix: str) -> str:
    """The id path segment, percent-decoded once (``%2F`` stays part of the id)."""
    raw = request.scope.get("raw_path")
    if isinstance(raw, bytes) and raw:
        path = raw.split(b"?", 1)[0].decode("latin-1")
        if path.startswith(prefix + "/"):
            return unquote(path[len(prefix) + 1 :], encoding="utf-8", errors="replace")
    return str(request.path_params["opportunity_id"])


def _check_uuid(account_id: str) -> None:
    """Truto types ``integrated_account_id`` as a UUID; the 400 wording is the emulator's."""
    if not _UUID.fullmatch(account_id):
        raise ApiError(400, f"Invalid integrated_account_id {account_id!r}: expected a UUID.")


def _cursor_offset(query: dict[str, Any]) -> int:
    cursor = query.get("next_cursor")
    if not cursor:
        return 0
    try:
        decoded = base64.urlsafe_b64decode(cursor.encode() + b"==").decode()
        kind, _, number = decoded.partition(":")
        if kind != "offset":
            raise ValueError(decoded)
        return max(0, int(number))
    except (ValueError, binascii.Error, AttributeError) as exc:
        raise ApiError(400, "Invalid next_cursor.") from exc


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode().rstrip("=")


def _limit(query: dict[str, Any]) -> int:
    raw = query.get("limit")
    if raw in (None, ""):
        return DEFAULT_LIMIT
    try:
        limit = int(raw)
    except (TypeError, ValueError) as exc:
        raise ApiError(400, "Invalid query parameter 'limit': expected an integer.") from exc
    if limit < 1:
        raise ApiError(400, "Invalid query parameter 'limit': must be >= 1.")
    return min(limit, MAX_LIMIT)


def _page(items: list[dict[str, Any]], query: dict[str, Any]) -> dict[str, Any]:
    """Truto's unified list envelope, with ``truto_key_by`` re-keying."""
    offset, limit = _cursor_offset(query), _limit(query)
    page = items[offset : offset + limit]
    end = offset + len(page)
    result: Any = page
    key_by = query.get("truto_key_by")
    if key_by:
        result = {str(item[key_by]): item for item in page if item.get(key_by) is not None}
    return {
        "result": result,
        "next_cursor": _cursor(end) if end < len(items) else None,
        "prev_cursor": _cursor(max(0, offset - limit)) if offset > 0 else None,
        "result_count": len(page),
    }


class Emulator:
    """Route handlers bound to one :class:`EmulatorState`."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.state = EmulatorState(config)

    # -- plumbing ------------------------------------------------------------------------------
    def _authorised(self, request: Request) -> None:
        header = request.headers.get("authorization")
        if not header:
            raise ApiError(
                401, "Missing Authorization header. Use 'Authorization: Bearer <token>'."
            )
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or token.strip() != self.state.config.token:
            raise ApiError(401, "Invalid API token.")

    def _log(self, call: Call, status: int) -> None:
        request = call.request
        headers = {h: request.headers[h] for h in RECORDED_HEADERS if h in request.headers}
        self.state.record(
            {
                "method": request.method,
                "path": request.url.path,
                "query": call.query,
                "headers": headers,
                "body": call.body,
                "status": status,
                "account_id": call.account.id
                if call.account
                else call.query.get("integrated_account_id"),
                "opportunity_id": call.opportunity_id,
                "applied": call.applied,
                "replay": call.replay,
                "fault": call.fault,
            }
        )

    async def _run(
        self,
        request: Request,
        handler: Callable[[Call], Awaitable[Response]],
        *,
        unified: bool,
    ) -> Response:
        call = Call(request, generation=self.state.generation)
        try:
            self._authorised(request)
            try:
                call.query = decode_query(request.query_params.multi_items())
            except QueryEncodingError as exc:
                raise ApiError(400, f"Malformed query string: {exc}") from exc
            response = await handler(call)
        except ApiError as exc:
            response = json_response(exc.status, exc.body, exc.headers)
        if unified and call.rate is not None:
            response.headers.update(call.rate.headers())
        if call.generation != self.state.generation:
            return response  # started before a reset(): keep it out of the fresh log
        self._log(call, 0 if isinstance(response, DroppingResponse) else response.status_code)
        return response

    def _account(self, call: Call) -> SeedAccount:
        account_id = call.query.get("integrated_account_id")
        if not account_id or not isinstance(account_id, str):
            raise ApiError(
                400,
                "Missing required query parameters: integrated_account_id",
                insight={
                    "missing_required_query_parameters": {
                        "description": "These query parameters are required.",
                        "value": ["integrated_account_id"],
                    }
                },
            )
        _check_uuid(account_id)
        account = self.state.accounts.get(account_id)
        if account is None:
            raise ApiError(404, f"Integrated account {account_id} not found.")
        call.account = account
        return account

    async def _pause(self, request: Request, seconds: float) -> None:
        """Sleep without blocking other requests; stop early if the client went away."""
        if seconds <= 0:
            return
        waiter = asyncio.ensure_future(_wait_disconnect(request))
        try:
            await asyncio.wait({waiter}, timeout=seconds)
        finally:
            waiter.cancel()

    def _gate(self, call: Call) -> tuple[SeedAccount, Options, Fate]:
        """Checks shared by every unified route, in Truto's order; faults are drawn here."""
        opts = _options(call.query)
        account = self._account(call)
        config = self.state.config
        if config.rate_limit is not None:
            call.rate = self.state.limiter.check(account.id, config.rate_limit)
            if not call.rate.allowed:
                message = "Rate limit exceeded. Retry after the window resets."
                raw = raw_error(account.integration, 429, message)
                call.fault = "rate_limited"
                raise ApiError(
                    429,
                    message,
                    remote=True,
                    raw_response=raw,
                    insight={
                        "rate_limit_error": {
                            "description": "The remote API rate limit was hit.",
                            "value": {"retry_after": call.rate.reset_s},
                        }
                    },
                )
        return account, opts, self.state.faults.draw(config)

    async def _misbehave(self, call: Call, account: SeedAccount, fate: Fate) -> None:
        await self._pause(call.request, fate.delay_s)
        if fate.fault_status is not None:
            call.fault = f"status_{fate.fault_status}"
            status = fate.fault_status
            if status == 502:
                raise ApiError(
                    502,
                    "The remote API returned an invalid response.",
                    remote=True,
                    raw_response="<html><body><h1>502 Bad Gateway</h1></body></html>",
                )
            raise ApiError(status, "Injected fault: the request could not be completed.")
        if account.status == "needs_reauth":
            message = "Authentication with the integration failed. Please reconnect the account."
            raise ApiError(
                401, message, remote=True, raw_response=raw_error(account.integration, 401, message)
            )

    # -- unified routes ------------------------------------------------------------------------
    async def opportunity(self, request: Request) -> Response:
        handler = self._patch if request.method == "PATCH" else self._get
        return await self._run(request, handler, unified=True)

    def _find(self, account: SeedAccount, call: Call) -> dict[str, Any]:
        call.opportunity_id = _raw_id(call.request, OPPORTUNITIES)
        record = account.opportunities.get(call.opportunity_id)
        if record is None:
            raise ApiError(404, f"Opportunity {call.opportunity_id} not found.")
        return record

    async def _get(self, call: Call) -> Response:
        account, opts, fate = self._gate(call)
        await self._misbehave(call, account, fate)
        record = self._find(account, call)
        response = _render(self.state, account, record, opts, 200)
        if fate.drop is not None:
            call.fault = f"drop_{fate.drop}"
            return _drop(bytes(response.body) if opts.fmt != "stream" else b"{}")
        return response

    async def _patch(self, call: Call) -> Response:
        raw_body = await call.request.body()
        try:
            call.body = json.loads(raw_body) if raw_body else {}
        except ValueError as exc:
            raise ApiError(400, "Request body is not valid JSON.") from exc
        account, opts, fate = self._gate(call)
        key = call.request.headers.get("idempotency-key")
        if not key:
            return await self._write(call, account, opts, fate)
        scope = (account.id, call.request.url.path, key)
        async with self.state.lock_for(scope):
            await self._misbehave(call, account, fate)
            cached = self.state.idempotency.get(scope)
            body_id = fingerprint(raw_body)
            if cached is not None:
                call.opportunity_id = _raw_id(call.request, OPPORTUNITIES)
                if cached.fingerprint != body_id:
                    raise ApiError(
                        409,
                        "Idempotency-Key was already used with a different request body.",
                    )
                call.replay = True
                headers = {**cached.headers, "truto-idempotent-replay": "true"}
                return Response(cached.body, cached.status, headers, cached.media_type)
            return await self._write(call, account, opts, fate, scope=scope, body_id=body_id)

    async def _write(
        self,
        call: Call,
        account: SeedAccount,
        opts: Options,
        fate: Fate,
        *,
        scope: tuple[str, str, str] | None = None,
        body_id: str = "",
    ) -> Response:
        if scope is None:
            await self._misbehave(call, account, fate)
        try:
            response = self._apply(call, account, opts, fate)
        except ApiError as exc:
            response = json_response(exc.status, exc.body, exc.headers)
        cacheable = response.status_code < 500 and response.status_code != 429
        if scope is not None and cacheable and not isinstance(response, DroppingResponse):
            body = bytes(response.body) if not isinstance(response, StreamingResponse) else None
            if body is not None or opts.fmt == "stream":
                record = account.opportunities.get(call.opportunity_id or "")
                if body is None and record is not None:
                    view = self.state.view(account, record)
                    body = _dumps(_shape(view, opts, self.state.documented_fields(account)))
                self.state.idempotency[scope] = CachedResponse(
                    body_id, response.status_code, body or b"", "application/json"
                )
        if fate.drop == "after" and call.applied:
            call.fault = "drop_after"
            return _drop(bytes(response.body) if isinstance(response.body, bytes) else b"{}")
        return response

    def _apply(self, call: Call, account: SeedAccount, opts: Options, fate: Fate) -> Response:
        if call.generation != self.state.generation:
            raise ApiError(503, "The emulator was reset while this request was in flight.")
        if account.is_sandbox:
            raise ApiError(405, "Sandbox integrated accounts do not allow write operations.")
        record = self._find(account, call)
        validate_update(account.integration, call.body)
        if fate.drop == "before":
            call.fault = "drop_before"
            return _drop(b'{"id":"' + (call.opportunity_id or "").encode() + b'"}')
        apply_update(
            account.integration, record, call.body, self.state.now(), stages=account.stages
        )
        call.applied = True
        self.state.apply_counts[(account.id, record["id"])] += 1
        return _render(self.state, account, record, opts, 200)

    async def list_opportunities(self, request: Request) -> Response:
        return await self._run(
            request,
            lambda call: self._list(call, lambda a: list(a.opportunities.values())),
            unified=True,
        )

    async def list_stages(self, request: Request) -> Response:
        return await self._run(
            request, lambda call: self._list(call, lambda a: a.stages), unified=True
        )

    async def list_users(self, request: Request) -> Response:
        return await self._run(
            request, lambda call: self._list(call, lambda a: a.users), unified=True
        )

    async def _list(
        self, call: Call, source: Callable[[SeedAccount], list[dict[str, Any]]]
    ) -> Response:
        account, opts, fate = self._gate(call)
        await self._misbehave(call, account, fate)
        is_opportunity = call.request.url.path.startswith(OPPORTUNITIES)
        items = []
        documented = self.state.documented_fields(account) if is_opportunity else frozenset()
        for item in source(account):
            view = self.state.view(account, item) if is_opportunity else dict(item)
            items.append(_shape(view, opts, documented))
        page = _page(items, call.query)
        if fate.drop is not None:
            call.fault = f"drop_{fate.drop}"
            return _drop(_dumps(page))
        return json_response(200, page)

    # -- integrated accounts (platform API: no faults, no integrated_account_id) --------------
    async def integrated_account(self, request: Request) -> Response:
        async def handler(call: Call) -> Response:
            account_id = unquote(str(request.path_params["account_id"]))
            _check_uuid(account_id)
            account = self.state.accounts.get(account_id)
            if account is None:
                raise ApiError(404, f"Integrated account {account_id} not found.")
            call.account = account
            return json_response(200, account.describe())

        return await self._run(request, handler, unified=False)

    async def integrated_accounts(self, request: Request) -> Response:
        async def handler(call: Call) -> Response:
            items = [a.describe() for a in self.state.accounts.values()]
            page = _page(items, call.query)
            return json_response(
                200,
                {
                    "result": page["result"],
                    "next_cursor": page["next_cursor"],
                    "limit": _limit(call.query),
                },
            )

        return await self._run(request, handler, unified=False)

    # -- admin ---------------------------------------------------------------------------------
    async def admin(self, request: Request) -> Response:
        try:
            self._authorised(request)
            data = await self._admin(request, request.path_params["action"])
        except ApiError as exc:
            return json_response(exc.status, exc.body)
        return json_response(200, data)

    async def _admin(self, request: Request, action: str) -> Any:
        state = self.state
        params = request.query_params
        if action == "health":
            return {"ok": True}
        if action == "info":
            return {"accounts": state.account_keys, "config": state.config.to_json()}
        if action == "reset" and request.method == "POST":
            state.reset()
            return {"ok": True}
        if action == "configure" and request.method == "POST":
            try:
                knobs = json.loads(await request.body() or b"{}")
                return state.configure(knobs).to_json()
            except (ValueError, TypeError) as exc:
                raise ApiError(400, str(exc)) from exc
        if action in ("opportunity", "opportunity-ids", "apply-count"):
            account = state.accounts.get(params.get("account_id", ""))
            if account is None:
                raise ApiError(404, "Unknown account_id.")
            if action == "opportunity-ids":
                return list(account.opportunities)
            opp_id = params.get("id", "")
            if action == "apply-count":
                return state.apply_counts[(account.id, opp_id)]
            record = account.opportunities.get(opp_id)
            return None if record is None else state.stored(account, record)
        if action == "requests":
            since = int(params.get("since", "0"))
            return [
                entry
                for entry in state.log
                if entry["seq"] > since
                and all(
                    params.get(name) in (None, str(entry[name]))
                    for name in ("method", "path", "account_id", "opportunity_id")
                )
            ]
        raise ApiError(404, f"Unknown emulator admin route {action!r}.")


async def _wait_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def _not_found(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    return json_response(status, error_body(status, f"Cannot {request.method} {request.url.path}"))


def create_app(config: EmulatorConfig | None = None) -> Starlette:
    """Build the ASGI app; ``app.state.emulator`` is the :class:`Emulator` (in-process tests)."""
    emulator = Emulator(config or EmulatorConfig())
    routes = [
        Route(OPPORTUNITIES, emulator.list_opportunities, methods=["GET"]),
        Route(
            OPPORTUNITIES + "/{opportunity_id:path}", emulator.opportunity, methods=["GET", "PATCH"]
        ),
        Route("/unified/crm/stages", emulator.list_stages, methods=["GET"]),
        Route("/unified/crm/users", emulator.list_users, methods=["GET"]),
        Route("/integrated-account", emulator.integrated_accounts, methods=["GET"]),
        Route("/integrated-account/{account_id}", emulator.integrated_account, methods=["GET"]),
        Route("/_emulator/{action}", emulator.admin, methods=["GET", "POST"]),
    ]
    app = Starlette(routes=routes, exception_handlers={404: _not_found, 405: _not_found})
    app.state.emulator = emulator
    return app
