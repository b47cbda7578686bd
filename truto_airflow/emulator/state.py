"""Mutable emulator state and what it does: seeded CRM data, account lookup, writes, the
idempotency cache, the request log, counters and the admin queries behind ``/_emulator/...``.

The routes in :mod:`truto_airflow.emulator.app` only read the request and call in here (the moto
split between ``responses.py`` and ``models.py``). All mutation happens on the server's single
event loop, between ``await`` points, so plain dicts are safe; the only lock needed is the
per-Idempotency-Key one (a keyed PATCH awaits latency between "not cached yet" and "applied").
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import functools
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from truto_airflow.capabilities import load_opportunity_capabilities
from truto_airflow.emulator.config import EmulatorConfig
from truto_airflow.emulator.errors import ApiError
from truto_airflow.emulator.faults import FaultInjector, RateLimiter, RateVerdict
from truto_airflow.emulator.render import Options, shape
from truto_airflow.emulator.seed import SeedAccount, build_seed, iso
from truto_airflow.emulator.vendor import raw_error, raw_object
from truto_airflow.emulator.writes import apply_update

if TYPE_CHECKING:
    from starlette.requests import Request

__all__ = ["CachedResponse", "Call", "EmulatorState", "check_uuid", "fingerprint"]

_UUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")

#: Request headers worth recording; ``authorization`` is never among them.
RECORDED_HEADERS = ("idempotency-key", "user-agent", "content-type", "accept", "x-request-id")


@functools.cache
def returned_fields(integration: str) -> frozenset[str] | None:
    """The docs' response fields for an integration (``None``: the page has no table for it)."""
    return load_opportunity_capabilities().returned_fields(integration)


def fingerprint(body: bytes) -> str:
    """Identity of a request body for Idempotency-Key reuse: canonical JSON when parseable."""
    try:
        canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    except ValueError:
        canonical = body
    return hashlib.sha256(canonical).hexdigest()


def check_uuid(account_id: str) -> None:
    """Truto types ``integrated_account_id`` as a UUID; the 400 wording is the emulator's."""
    if not _UUID.fullmatch(account_id):
        raise ApiError(400, f"Invalid integrated_account_id {account_id!r}: expected a UUID.")


def check_connected(account: SeedAccount) -> None:
    """An account whose CRM credentials lapsed answers every unified call with a remote 401."""
    if account.status == "needs_reauth":
        message = "Authentication with the integration failed. Please reconnect the account."
        raise ApiError(
            401, message, remote=True, raw_response=raw_error(account.integration, 401, message)
        )


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
class CachedResponse:
    """A first response kept for Idempotency-Key replays."""

    fingerprint: str
    status: int
    body: bytes
    media_type: str
    headers: dict[str, str] = field(default_factory=dict)


class EmulatorState:
    """Everything a test may inspect or reset."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.initial_config = config
        self.config = config
        self.generation = 0
        self.limiter = RateLimiter()
        self.faults = FaultInjector(config.seed)
        self.reset()

    def reset(self) -> None:
        """Restore seed data and startup knobs; forget requests, keys and rate windows.

        Requests still in flight (a slow response a client gave up on) belong to the old
        generation: they neither apply nor get logged afterwards.
        """
        self.generation = getattr(self, "generation", 0) + 1
        self.config = self.initial_config
        seed = build_seed(self.config.seed, self.config.opportunities)
        self.accounts: dict[str, SeedAccount] = seed.accounts
        self.account_keys: dict[str, str] = seed.by_key()
        self.idempotency: dict[tuple[str, str, str], CachedResponse] = {}
        self.idempotency_locks: dict[tuple[str, str, str], asyncio.Lock] = {}
        self.apply_counts: collections.Counter[tuple[str, str]] = collections.Counter()
        self.log: collections.deque[dict[str, Any]] = collections.deque(
            maxlen=self.config.request_log_limit
        )
        self.sequence = 0
        self.limiter.reset()
        self.faults.reset()

    def configure(self, knobs: dict[str, Any]) -> EmulatorConfig:
        self.config = self.config.with_knobs(knobs)
        return self.config

    def lock_for(self, scope: tuple[str, str, str]) -> asyncio.Lock:
        lock = self.idempotency_locks.get(scope)
        if lock is None:
            lock = self.idempotency_locks[scope] = asyncio.Lock()
        return lock

    # -- request log ---------------------------------------------------------------------------
    def record(self, call: Call, status: int) -> None:
        """Log a finished request (never its ``Authorization`` header); ``status`` 0: dropped."""
        request = call.request
        self.sequence += 1
        self.log.append(
            {
                "method": request.method,
                "path": request.url.path,
                "query": call.query,
                "headers": {
                    h: request.headers[h] for h in RECORDED_HEADERS if h in request.headers
                },
                "body": call.body,
                "status": status,
                "account_id": call.account.id
                if call.account
                else call.query.get("integrated_account_id"),
                "opportunity_id": call.opportunity_id,
                "applied": call.applied,
                "replay": call.replay,
                "fault": call.fault,
                "seq": self.sequence,
            }
        )

    def requests(self, params: Mapping[str, str]) -> list[dict[str, Any]]:
        """Log entries after ``since``, filtered by exact method, path, account or opportunity."""
        since = int(params.get("since", "0"))
        return [
            entry
            for entry in self.log
            if entry["seq"] > since
            and all(
                params.get(name) in (None, str(entry[name]))
                for name in ("method", "path", "account_id", "opportunity_id")
            )
        ]

    # -- accounts and records -------------------------------------------------------------------
    def account(self, account_id: str) -> SeedAccount:
        """The integrated account for a UUID path or query value (400 if not a UUID, else 404)."""
        check_uuid(account_id)
        account = self.accounts.get(account_id)
        if account is None:
            raise ApiError(404, f"Integrated account {account_id} not found.")
        return account

    def rate_check(self, account: SeedAccount) -> RateVerdict | None:
        limit = self.config.rate_limit
        return None if limit is None else self.limiter.check(account.id, limit)

    @staticmethod
    def find(account: SeedAccount, opportunity_id: str) -> dict[str, Any]:
        record = account.opportunities.get(opportunity_id)
        if record is None:
            raise ApiError(404, f"Opportunity {opportunity_id} not found.")
        return record

    def check_writable(self, generation: int, account: SeedAccount) -> None:
        """A PATCH started before a reset, or on a sandbox account, writes nothing."""
        if generation != self.generation:
            raise ApiError(503, "The emulator was reset while this request was in flight.")
        if account.is_sandbox:
            raise ApiError(405, "Sandbox integrated accounts do not allow write operations.")

    def apply(self, account: SeedAccount, record: dict[str, Any], body: Any) -> None:
        apply_update(account.integration, record, body, self.now(), stages=account.stages)
        self.apply_counts[(account.id, record["id"])] += 1

    # -- idempotency cache ----------------------------------------------------------------------
    def replay(self, scope: tuple[str, str, str], body_id: str) -> CachedResponse | None:
        """The first answer for this key, or ``None``; a different body under the key is a 409."""
        cached = self.idempotency.get(scope)
        if cached is not None and cached.fingerprint != body_id:
            raise ApiError(409, "Idempotency-Key was already used with a different request body.")
        return cached

    def remember(self, scope: tuple[str, str, str], body_id: str, status: int, body: bytes) -> None:
        self.idempotency[scope] = CachedResponse(body_id, status, body, "application/json")

    # -- admin queries (``/_emulator/...``) -----------------------------------------------------
    def info(self) -> dict[str, Any]:
        return {"accounts": self.account_keys, "config": self.config.to_json()}

    def admin_account(self, account_id: str) -> SeedAccount:
        account = self.accounts.get(account_id)
        if account is None:
            raise ApiError(404, "Unknown account_id.")
        return account

    def stored_by_id(self, account_id: str, opportunity_id: str) -> dict[str, Any] | None:
        account = self.admin_account(account_id)
        record = account.opportunities.get(opportunity_id)
        return None if record is None else self.stored(account, record)

    def apply_count(self, account_id: str, opportunity_id: str) -> int:
        return self.apply_counts[(self.admin_account(account_id).id, opportunity_id)]

    def stored(self, account: SeedAccount, record: dict[str, Any]) -> dict[str, Any]:
        """The whole record as the CRM holds it (admin inspection, not an API answer)."""
        unified = {k: v for k, v in record.items() if k != "remote_data"}
        unified["remote_data"] = {
            **raw_object(account.integration, record),
            **(record.get("remote_data") or {}),
        }
        return unified

    def view(self, account: SeedAccount, record: dict[str, Any]) -> dict[str, Any]:
        """The unified representation, limited to the fields the docs' response table says this
        CRM returns; ``remote_data`` is the vendor object plus passthrough.

        The record may hold more (a write the CRM applies but does not echo, such as HubSpot's
        ``status``): it is kept, and invisible to reads, like in the CRM behind Truto.
        """
        # Shallow copies suffice: views are serialised before the record can change again.
        unified = self.stored(account, record)
        returned = returned_fields(account.integration)
        if returned is None:
            return unified
        return {k: v for k, v in unified.items() if k in returned}

    def unified(
        self, account: SeedAccount, record: dict[str, Any], opts: Options
    ) -> dict[str, Any]:
        """The unified answer for ``record`` with the request's shaping options applied."""
        return shape(self.view(account, record), opts, self.documented_fields(account))

    @staticmethod
    def documented_fields(account: SeedAccount) -> frozenset[str]:
        """The fields a ``normalized`` answer always carries (``null`` when unset)."""
        caps = load_opportunity_capabilities()
        return caps.returned_fields(account.integration) or caps.response_fields()

    @staticmethod
    def now() -> str:
        return iso(dt.datetime.now(dt.timezone.utc))
