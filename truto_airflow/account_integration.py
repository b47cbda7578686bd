"""Which CRM an integrated account belongs to, remembered per process.

The preflight needs each account's integration (``GET /integrated-account/{id}``). It never changes
for an account, so one lookup per worker process serves every task that writes to it.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "INTEGRATIONS",
    "IntegrationCache",
    "ResolvedIntegration",
    "integration_from_account",
    "lookup_key",
    "resolved_from_account",
]


def integration_from_account(account: Mapping[str, Any]) -> str | None:
    """``integration.name`` of a ``GET /integrated-account/{id}`` answer, if present."""
    integration = account.get("integration")
    if isinstance(integration, Mapping):
        name = integration.get("name")
        if isinstance(name, str) and name.strip():
            return name.strip()
    name = account.get("integration_name")
    return name.strip() if isinstance(name, str) and name.strip() else None


@dataclass(frozen=True)
class ResolvedIntegration:
    """The integration behind an account, or why it could not be resolved."""

    name: str | None
    source: Literal["explicit", "account", "unresolved"]
    detail: str | None = None


def resolved_from_account(account: Any) -> ResolvedIntegration:
    """The integration named by a ``GET /integrated-account/{id}`` answer, if it names one."""
    name = integration_from_account(account) if isinstance(account, Mapping) else None
    if name:
        return ResolvedIntegration(name, "account")
    return ResolvedIntegration(None, "unresolved", "the integrated account has no integration.name")


class IntegrationCache:
    """Each account's integration, remembered across tasks in this process (one worker).

    An integrated account's integration never changes, yet every mapped single-row task would
    otherwise pay ``GET /integrated-account/{id}`` before its PATCH. Keyed by base URL, a
    fingerprint of the token (a hash: the token itself is never kept) and the account, so a
    different token or Truto environment makes its own lookup (which also proves that token may
    see the account). Only resolved names are kept; failures and unresolved answers are asked
    again next time. Bounded (least recently used out first) and with a TTL, so a long-lived
    worker forgets accounts it no longer writes to. Thread-safe; shared by sync and async
    lookups.
    """

    def __init__(
        self,
        *,
        max_entries: int = 4096,
        ttl_seconds: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_entries = max_entries
        self.ttl_seconds = ttl_seconds
        self.clock = clock
        self._entries: OrderedDict[tuple[str, str, str], tuple[float, str]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(base_url: str, token: str, account: str) -> tuple[str, str, str]:
        fingerprint = hashlib.sha256(token.encode()).hexdigest()[:32]
        return (base_url, fingerprint, account)

    def get(self, key: tuple[str, str, str]) -> str | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if self.clock() >= entry[0]:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return entry[1]

    def put(self, key: tuple[str, str, str], integration: str) -> None:
        with self._lock:
            self._entries[key] = (self.clock() + self.ttl_seconds, integration)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


#: The process-wide cache every :class:`Preflight` uses.
INTEGRATIONS = IntegrationCache()


def lookup_key(hook: Any, account: str | None) -> tuple[str, str, str] | None:
    """The :data:`INTEGRATIONS` key for a lookup through ``hook``; None when it has no settings."""
    settings = getattr(hook, "settings", None)
    base_url, token = getattr(settings, "base_url", None), getattr(settings, "token", None)
    if not (account and isinstance(base_url, str) and isinstance(token, str) and token):
        return None
    return IntegrationCache.key(base_url, token, account)
