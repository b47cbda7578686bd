"""Which CRM an integrated account belongs to, remembered on the worker.

The preflight needs each account's integration (``GET /integrated-account/{id}``). It never changes
for an account, so one lookup serves every task that writes to it: within a process
(:class:`IntegrationCache`) and, because Airflow runs every task in a fresh process, across the
worker's task processes too (:class:`IntegrationFileStore`: one small file per account in a
private per-user cache directory). Opt out of the files with ``TRUTO_AIRFLOW_INTEGRATION_CACHE=off``
(environment) or the connection extra ``"integration_cache": false``; docs/data_safety.md.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import stat
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

__all__ = [
    "CACHE_DIR_ENV",
    "CACHE_SWITCH_ENV",
    "DEFAULT_TTL_SECONDS",
    "INTEGRATIONS",
    "IntegrationCache",
    "IntegrationFileStore",
    "IntegrationKey",
    "ResolvedIntegration",
    "integration_from_account",
    "lookup_key",
    "resolved_from_account",
    "shared_cache_directory",
]

#: How long an account's integration is trusted (in memory and in the files).
DEFAULT_TTL_SECONDS = 3600.0
#: ``off`` / ``false`` / ``0`` / ``no``: no cache files (each process looks up once, as before).
CACHE_SWITCH_ENV = "TRUTO_AIRFLOW_INTEGRATION_CACHE"
#: Where the files go (default ``$XDG_CACHE_HOME/truto-airflow``, else ``~/.cache/truto-airflow``).
CACHE_DIR_ENV = "TRUTO_AIRFLOW_CACHE_DIR"
_OFF = frozenset({"0", "off", "false", "no", "disabled"})
_MAX_FILE_BYTES = 4096
_MAX_NAME_CHARS = 200


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


class IntegrationKey(NamedTuple):
    """Whose lookup an answer is: base URL, a fingerprint of the token (a hash, never the token),
    the account; ``shared``: whether other processes may reuse it (the cache files)."""

    base_url: str
    fingerprint: str
    account: str
    shared: bool = True

    def digest(self) -> str:
        """The cache file's name: a hash of the key (no URL, account or token readable in it)."""
        text = "\0".join(("truto-airflow/integration/v1", self.base_url, self.fingerprint))
        return hashlib.sha256(f"{text}\0{self.account}".encode()).hexdigest()


def _switched_off() -> bool:
    return os.environ.get(CACHE_SWITCH_ENV, "").strip().lower() in _OFF


def _cache_root() -> Path | None:
    configured = os.environ.get(CACHE_DIR_ENV, "").strip()
    if configured:
        return Path(configured).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "truto-airflow"
    try:
        return Path.home() / ".cache" / "truto-airflow"
    except (RuntimeError, KeyError):  # no home directory for this user
        return None


def _uid() -> int | None:
    """This process's user id; None where there is none to check ownership with (Windows)."""
    geteuid = getattr(os, "geteuid", None)
    return None if geteuid is None else int(geteuid())


def shared_cache_directory() -> Path | None:
    """The private directory the cache files live in, or None (switched off or not usable).

    Created ``0700``; a directory this user does not own, a symlink or one that others may read
    is not used (a planted answer could make the preflight let a field through that the CRM
    drops), so the worker falls back to one lookup per process. So is every directory where
    ownership cannot be checked (no ``os.geteuid``).
    """
    uid = _uid()
    if _switched_off() or uid is None:
        return None
    root = _cache_root()
    if root is None:
        return None
    directory = root / "integrations"
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = os.lstat(directory)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != uid:
            return None
        if info.st_mode & 0o077:
            os.chmod(directory, 0o700)  # ours: tighten it (an older umask may have widened it)
    except OSError:
        return None
    return directory


class IntegrationFileStore:
    """Each account's integration, shared by the task processes of one worker (one file each).

    A file holds only ``{"integration": <name>, "expires_at": <unix time>}``; its name is a hash of
    the :class:`IntegrationKey`, so neither the token nor its fingerprint is ever written. Files
    are written atomically (a private temporary file, then a rename) with mode ``0600``. A file
    that is unreadable, corrupt, expired, too far in the future, not this user's or readable by
    others is ignored (the lookup is made again and the file rewritten). Only resolved names are
    stored: a failed or unresolved lookup is never remembered.
    """

    def __init__(
        self,
        *,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        clock: Callable[[], float] = time.time,
        directory: Callable[[], Path | None] = shared_cache_directory,
    ) -> None:
        self.ttl_seconds = ttl_seconds
        self.clock = clock
        self.directory = directory

    def path(self, key: IntegrationKey) -> Path | None:
        """The file for ``key``; None when the files are off or unusable."""
        directory = self.directory()
        return None if directory is None else directory / f"{key.digest()}.json"

    def get(self, key: IntegrationKey) -> str | None:
        path = self.path(key)
        if path is None:
            return None
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            return None
        try:
            info = os.fstat(fd)
            if (
                not stat.S_ISREG(info.st_mode)
                or info.st_uid != _uid()
                or info.st_mode & 0o077
                or info.st_size > _MAX_FILE_BYTES
            ):
                return None
            data = json.loads(os.read(fd, _MAX_FILE_BYTES + 1))
        except (OSError, ValueError):  # unreadable, not JSON, not UTF-8
            return None
        finally:
            os.close(fd)
        return self._valid(data)

    def _valid(self, data: Any) -> str | None:
        if not isinstance(data, dict):
            return None
        name, expires = data.get("integration"), data.get("expires_at")
        if not (isinstance(name, str) and 0 < len(name) <= _MAX_NAME_CHARS and name.isprintable()):
            return None
        if isinstance(expires, bool) or not isinstance(expires, (int, float)):
            return None
        now = self.clock()
        # Expired, or further ahead than a fresh entry could be (clock moved back, edited file).
        if not math.isfinite(expires) or not now < expires <= now + self.ttl_seconds + 60.0:
            return None
        return name.strip() or None

    def put(self, key: IntegrationKey, integration: str) -> None:
        path = self.path(key)
        if path is None or not integration:
            return
        text = json.dumps(
            {"integration": integration, "expires_at": self.clock() + self.ttl_seconds}
        )
        try:
            fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        except OSError:
            return
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:  # mkstemp: mode 0600
                fh.write(text)
            os.replace(temporary, path)
        except OSError:
            pass  # a cache: the next task looks the account up again
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)


class IntegrationCache:
    """Each account's integration, remembered across tasks in this process (one worker).

    An integrated account's integration never changes, yet every mapped single-row task would
    otherwise pay ``GET /integrated-account/{id}`` before its PATCH. Keyed by base URL, a
    fingerprint of the token (a hash: the token itself is never kept) and the account, so a
    different token or Truto environment makes its own lookup (which also proves that token may
    see the account). Only resolved names are kept; failures and unresolved answers are asked
    again next time. Bounded (least recently used out first) and with a TTL, so a long-lived
    worker forgets accounts it no longer writes to. Thread-safe; shared by sync and async
    lookups. A miss asks ``store`` (the worker's files, for keys that are ``shared``), and what is
    put is written there too, so the next task process finds it.
    """

    def __init__(
        self,
        *,
        max_entries: int = 4096,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        store: IntegrationFileStore | None = None,
    ) -> None:
        self.max_entries = max_entries
        self.ttl_seconds = ttl_seconds
        self.clock = clock
        self.store = store
        self._entries: OrderedDict[IntegrationKey, tuple[float, str]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(base_url: str, token: str, account: str, *, shared: bool = True) -> IntegrationKey:
        fingerprint = hashlib.sha256(token.encode()).hexdigest()[:32]
        return IntegrationKey(base_url, fingerprint, account, shared)

    def get(self, key: IntegrationKey) -> str | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and self.clock() >= entry[0]:
                del self._entries[key]
                entry = None
            if entry is not None:
                self._entries.move_to_end(key)
                return entry[1]
        stored = self.store.get(key) if self.store is not None and key.shared else None
        if stored is not None:
            self._remember(key, stored)
        return stored

    def put(self, key: IntegrationKey, integration: str) -> None:
        self._remember(key, integration)
        if self.store is not None and key.shared:
            self.store.put(key, integration)

    def _remember(self, key: IntegrationKey, integration: str) -> None:
        with self._lock:
            self._entries[key] = (self.clock() + self.ttl_seconds, integration)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        """Forget this process's entries (the worker's files stay)."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


#: The cache every :class:`~truto_airflow.preflight.Preflight` uses: this process's entries,
#: backed by the worker's files.
INTEGRATIONS = IntegrationCache(store=IntegrationFileStore())


def lookup_key(hook: Any, account: str | None) -> IntegrationKey | None:
    """The :data:`INTEGRATIONS` key for a lookup through ``hook``; None when it has no settings.

    Shared with other processes unless the connection says ``"integration_cache": false``.
    """
    settings = getattr(hook, "settings", None)
    base_url, token = getattr(settings, "base_url", None), getattr(settings, "token", None)
    if not (account and isinstance(base_url, str) and isinstance(token, str) and token):
        return None
    shared = getattr(settings, "integration_cache", True) is not False
    return IntegrationCache.key(base_url, token, account, shared=shared)
