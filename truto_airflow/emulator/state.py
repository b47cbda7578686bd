"""Mutable emulator state: seeded CRM data, the idempotency cache, the request log, counters.

All mutation happens on the server's single event loop, between ``await`` points, so plain dicts
are safe; the only lock needed is the per-Idempotency-Key one (a keyed PATCH awaits latency
between "not cached yet" and "applied").
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import functools
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from truto_airflow.capabilities import load_opportunity_capabilities
from truto_airflow.emulator.config import EmulatorConfig
from truto_airflow.emulator.faults import FaultInjector, RateLimiter
from truto_airflow.emulator.seed import SeedAccount, build_seed, iso
from truto_airflow.emulator.vendor import raw_object

__all__ = ["CachedResponse", "EmulatorState", "fingerprint"]

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

    def record(self, entry: dict[str, Any]) -> None:
        self.sequence += 1
        entry["seq"] = self.sequence
        self.log.append(entry)

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

    @staticmethod
    def documented_fields(account: SeedAccount) -> frozenset[str]:
        """The fields a ``normalized`` answer always carries (``null`` when unset)."""
        caps = load_opportunity_capabilities()
        return caps.returned_fields(account.integration) or caps.response_fields()

    @staticmethod
    def now() -> str:
        return iso(dt.datetime.now(dt.timezone.utc))
