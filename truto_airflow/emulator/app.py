"""The emulator's routes: Truto's documented behaviour, not any particular client's.

Routes (bearer token required on all of them, admin routes included):

* ``GET|PATCH /unified/crm/opportunities/{id}``, ``GET /unified/crm/opportunities``,
  ``GET /unified/crm/stages``, ``GET /unified/crm/users`` (list envelope, cursor pagination,
  ``truto_key_by``);
* ``GET /integrated-account/{id}`` and ``GET /integrated-account`` (no faults, no account param);
* ``/_emulator/...`` admin routes used by :class:`~truto_airflow.emulator.server.EmulatorHandle`.

Handlers only read the request and call the state (:mod:`~truto_airflow.emulator.state`), the
fault draws (:mod:`~truto_airflow.emulator.faults`) and the renderers
(:mod:`~truto_airflow.emulator.render`), as moto's ``responses.py`` does with its models.

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
import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from truto_airflow.emulator import paging
from truto_airflow.emulator.config import EmulatorConfig
from truto_airflow.emulator.errors import ApiError, error_body
from truto_airflow.emulator.faults import Fate, injected_error, rate_limited
from truto_airflow.emulator.query import decode_query
from truto_airflow.emulator.render import (
    DroppedConnection,
    DroppingResponse,
    Options,
    drop,
    dumps,
    error_response,
    json_response,
    parse_options,
    render,
    shape,
)
from truto_airflow.emulator.seed import SeedAccount
from truto_airflow.emulator.state import Call, EmulatorState, check_connected, fingerprint
from truto_airflow.emulator.writes import validate_update
from truto_airflow.query import QueryEncodingError

__all__ = ["DroppedConnection", "create_app"]

OPPORTUNITIES = "/unified/crm/opportunities"
_Handler = Callable[[Call], Awaitable[Response]]


def _raw_id(request: Request, prefix: str) -> str:
    """The id path segment, percent-decoded once (``%2F`` stays part of the id)."""
    raw = request.scope.get("raw_path")
    if isinstance(raw, bytes) and raw:
        path = raw.split(b"?", 1)[0].decode("latin-1")
        if path.startswith(prefix + "/"):
            return unquote(path[len(prefix) + 1 :], encoding="utf-8", errors="replace")
    return str(request.path_params["opportunity_id"])


def _missing_account() -> ApiError:
    return ApiError(
        400,
        "Missing required query parameters: integrated_account_id",
        insight={
            "missing_required_query_parameters": {
                "description": "These query parameters are required.",
                "value": ["integrated_account_id"],
            }
        },
    )


async def _pause(request: Request, seconds: float) -> None:
    """Sleep without blocking other requests; stop early if the client went away."""
    if seconds <= 0:
        return
    waiter = asyncio.ensure_future(_wait_disconnect(request))
    try:
        await asyncio.wait({waiter}, timeout=seconds)
    finally:
        waiter.cancel()


async def _wait_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


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

    async def _run(self, request: Request, handler: _Handler, *, unified: bool) -> Response:
        call = Call(request, generation=self.state.generation)
        try:
            self._authorised(request)
            try:
                call.query = decode_query(request.query_params.multi_items())
            except QueryEncodingError as exc:
                raise ApiError(400, f"Malformed query string: {exc}") from exc
            response = await handler(call)
        except ApiError as exc:
            response = error_response(exc)
        if unified and call.rate is not None:
            response.headers.update(call.rate.headers())
        if call.generation != self.state.generation:
            return response  # started before a reset(): keep it out of the fresh log
        self.state.record(
            call, 0 if isinstance(response, DroppingResponse) else response.status_code
        )
        return response

    def _gate(self, call: Call) -> tuple[SeedAccount, Options, Fate]:
        """Checks shared by every unified route, in Truto's order; faults are drawn here."""
        opts = parse_options(call.query)
        account_id = call.query.get("integrated_account_id")
        if not account_id or not isinstance(account_id, str):
            raise _missing_account()
        account = call.account = self.state.account(account_id)
        call.rate = self.state.rate_check(account)
        if call.rate is not None and not call.rate.allowed:
            call.fault = "rate_limited"
            raise rate_limited(account.integration, call.rate)
        return account, opts, self.state.faults.draw(self.state.config)

    async def _misbehave(self, call: Call, account: SeedAccount, fate: Fate) -> None:
        await _pause(call.request, fate.delay_s)
        if fate.fault_status is not None:
            call.fault = f"status_{fate.fault_status}"
            raise injected_error(fate.fault_status)
        check_connected(account)

    def _record(self, account: SeedAccount, call: Call) -> dict[str, Any]:
        call.opportunity_id = _raw_id(call.request, OPPORTUNITIES)
        return self.state.find(account, call.opportunity_id)

    # -- unified routes ------------------------------------------------------------------------
    async def opportunity(self, request: Request) -> Response:
        handler = self._patch if request.method == "PATCH" else self._get
        return await self._run(request, handler, unified=True)

    async def _get(self, call: Call) -> Response:
        account, opts, fate = self._gate(call)
        await self._misbehave(call, account, fate)
        record = self._record(account, call)
        response = render(account, record, opts, self.state.unified(account, record, opts))
        if fate.drop is not None:
            call.fault = f"drop_{fate.drop}"
            return drop(bytes(response.body) if opts.fmt != "stream" else b"{}")
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
            body_id = fingerprint(raw_body)
            if scope in self.state.idempotency:  # a replay or a 409: both name the record
                call.opportunity_id = _raw_id(call.request, OPPORTUNITIES)
            cached = self.state.replay(scope, body_id)
            if cached is not None:
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
            response = error_response(exc)
        cacheable = response.status_code < 500 and response.status_code != 429
        if scope is not None and cacheable and not isinstance(response, DroppingResponse):
            body = bytes(response.body) if not isinstance(response, StreamingResponse) else None
            if body is not None or opts.fmt == "stream":
                record = account.opportunities.get(call.opportunity_id or "")
                if body is None and record is not None:
                    body = dumps(self.state.unified(account, record, opts))
                self.state.remember(scope, body_id, response.status_code, body or b"")
        if fate.drop == "after" and call.applied:
            call.fault = "drop_after"
            return drop(bytes(response.body) if isinstance(response.body, bytes) else b"{}")
        return response

    def _apply(self, call: Call, account: SeedAccount, opts: Options, fate: Fate) -> Response:
        self.state.check_writable(call.generation, account)
        record = self._record(account, call)
        validate_update(account.integration, call.body)
        if fate.drop == "before":
            call.fault = "drop_before"
            return drop(b'{"id":"' + (call.opportunity_id or "").encode() + b'"}')
        self.state.apply(account, record, call.body)
        call.applied = True
        return render(account, record, opts, self.state.unified(account, record, opts))

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
        if call.request.url.path.startswith(OPPORTUNITIES):
            items = [self.state.unified(account, item, opts) for item in source(account)]
        else:
            items = [shape(dict(item), opts) for item in source(account)]
        page = paging.page(items, call.query)
        if fate.drop is not None:
            call.fault = f"drop_{fate.drop}"
            return drop(dumps(page))
        return json_response(200, page)

    # -- integrated accounts (platform API: no faults, no integrated_account_id) --------------
    async def integrated_account(self, request: Request) -> Response:
        async def handler(call: Call) -> Response:
            account = self.state.account(unquote(str(request.path_params["account_id"])))
            call.account = account
            return json_response(200, account.describe())

        return await self._run(request, handler, unified=False)

    async def integrated_accounts(self, request: Request) -> Response:
        async def handler(call: Call) -> Response:
            items = [a.describe() for a in self.state.accounts.values()]
            page = paging.page(items, call.query)
            return json_response(
                200,
                {
                    "result": page["result"],
                    "next_cursor": page["next_cursor"],
                    "limit": paging.limit(call.query),
                },
            )

        return await self._run(request, handler, unified=False)

    # -- admin: one route per action, each a call into the state ------------------------------
    def _admin(self, action: Callable[[Request], Any]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                self._authorised(request)
                result = action(request)
                data = await result if asyncio.iscoroutine(result) else result
            except ApiError as exc:
                return json_response(exc.status, exc.body)
            return json_response(200, data)

        return endpoint

    async def _configure(self, request: Request) -> Any:
        try:
            knobs = json.loads(await request.body() or b"{}")
            return self.state.configure(knobs).to_json()
        except (ValueError, TypeError) as exc:
            raise ApiError(400, str(exc)) from exc

    def _reset(self, request: Request) -> Any:
        self.state.reset()
        return {"ok": True}

    def admin_routes(self) -> list[Route]:
        state = self.state

        def param(request: Request, name: str) -> str:
            return request.query_params.get(name, "")

        def unknown(request: Request) -> Any:
            action = request.path_params["action"]
            raise ApiError(404, f"Unknown emulator admin route {action!r}.")

        # Reads answer GET and POST alike; changes want POST.
        reads: dict[str, Callable[[Request], Any]] = {
            "health": lambda r: {"ok": True},
            "info": lambda r: state.info(),
            "opportunity": lambda r: state.stored_by_id(param(r, "account_id"), param(r, "id")),
            "opportunity-ids": lambda r: list(
                state.admin_account(param(r, "account_id")).opportunities
            ),
            "apply-count": lambda r: state.apply_count(param(r, "account_id"), param(r, "id")),
            "requests": lambda r: state.requests(r.query_params),
        }
        changes: dict[str, Callable[[Request], Any]] = {
            "reset": self._reset,
            "configure": self._configure,
        }
        routes = [
            Route(f"/_emulator/{name}", self._admin(action), methods=["GET", "POST"])
            for name, action in reads.items()
        ]
        routes += [
            Route(f"/_emulator/{name}", self._admin(action), methods=["POST"])
            for name, action in changes.items()
        ]
        # Anything else under /_emulator (an unknown action, or GET on a POST action) is the
        # emulator's own 404, after the token check like every other route.
        routes.append(Route("/_emulator/{action}", self._admin(unknown), methods=["GET", "POST"]))
        return routes


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
        *emulator.admin_routes(),
    ]
    app = Starlette(routes=routes, exception_handlers={404: _not_found, 405: _not_found})
    app.state.emulator = emulator
    return app
