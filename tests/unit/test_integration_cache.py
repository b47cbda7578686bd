"""Per-task overhead: what a worker process remembers across tasks (issue 12).

* Each account's integration (immutable) is looked up once per process, per base URL and token
  (``preflight.INTEGRATIONS``), for sync and async lookups alike; failures are never remembered.
* The TLS context (reading the CA bundle) is built once per process, not once per task's client.
* Airflow runs each task in a fresh process: the worker's cache files carry each account's
  integration to the next task process (private, atomic, never the token, corrupt files ignored,
  failures never written, opt-out by environment or connection extra).
"""

from __future__ import annotations

import json
import os
import ssl
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.conftest import ACCOUNT_ID, TOKEN, truto_conn_json
from truto_airflow.account_integration import (
    IntegrationFileStore,
    lookup_key,
    shared_cache_directory,
)
from truto_airflow.exceptions import TrutoAPIError, TrutoConfigError
from truto_airflow.hooks._connection import TrutoConnectionSettings
from truto_airflow.hooks.truto import TrutoHook
from truto_airflow.preflight import INTEGRATIONS, IntegrationCache, Preflight
from truto_airflow.retry import RetryPolicy

OTHER = "7d0c1a52-1f4e-4bde-9a39-0b3c2f1d9e44"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _server(seen: list[str], status: dict[str, int] | None = None) -> Any:
    """A MockTransport handler: the account answers HubSpot, or ``status[account]``."""

    def handler(request: httpx2.Request) -> httpx2.Response:
        token_tail = request.headers["authorization"][-6:]
        seen.append(f"{request.url.host} {token_tail} {request.url.path}")
        account = request.url.path.rsplit("/", 1)[-1]
        code = (status or {}).get(account, 200)
        if code != 200:
            return httpx2.Response(code, json={"error": "nope"})
        return httpx2.Response(200, json={"id": account, "integration": {"name": "hubspot"}})

    return handler


def _hook(
    monkeypatch: pytest.MonkeyPatch,
    handler: Any,
    *,
    conn_id: str = "truto_default",
    host: str = "https://api.truto.one",
    token: str = TOKEN,
) -> TrutoHook:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", truto_conn_json(host, token=token))
    return TrutoHook(
        conn_id,
        transport=httpx2.MockTransport(handler),
        async_transport=httpx2.MockTransport(handler),
        retry_policy=RetryPolicy(max_retries=0),
    )


def _task(hook: TrutoHook, account: str = ACCOUNT_ID) -> str | None:
    """What one mapped task does: a fresh Preflight (and a fresh hook) per task."""
    return Preflight(hook=hook).resolve(account).name


def test_mapped_tasks_look_an_account_up_once(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    for _ in range(5):  # five tasks, each with its own hook and Preflight, on one worker
        assert _task(_hook(monkeypatch, _server(seen))) == "hubspot"
    assert seen == [f"api.truto.one {TOKEN[-6:]} /integrated-account/{ACCOUNT_ID}"]
    _task(_hook(monkeypatch, _server(seen)), OTHER)  # another account is its own lookup
    assert len(seen) == 2 and seen[1].endswith(OTHER)


def test_another_token_or_base_url_looks_up_again(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    _task(_hook(monkeypatch, _server(seen)))
    _task(_hook(monkeypatch, _server(seen), token="another-token-91c3e0"))
    _task(_hook(monkeypatch, _server(seen), host="https://eu.truto.example"))
    assert [s.split(" /")[0] for s in seen] == [
        f"api.truto.one {TOKEN[-6:]}",
        "api.truto.one 91c3e0",
        f"eu.truto.example {TOKEN[-6:]}",
    ]
    # each of the three is now remembered
    _task(_hook(monkeypatch, _server(seen), token="another-token-91c3e0"))
    _task(_hook(monkeypatch, _server(seen), host="https://eu.truto.example"))
    assert len(seen) == 3


@pytest.mark.parametrize("code", [401, 403, 404, 500])
def test_failures_are_not_remembered(monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    seen: list[str] = []
    status = {ACCOUNT_ID: code}
    for _ in range(2):
        with pytest.raises(TrutoAPIError):
            _task(_hook(monkeypatch, _server(seen, status)))
    assert len(seen) == 2
    assert len(INTEGRATIONS) == 0
    status[ACCOUNT_ID] = 200  # fixed: the next task asks again and succeeds
    assert _task(_hook(monkeypatch, _server(seen, status))) == "hubspot"
    assert len(seen) == 3


def test_an_account_without_integration_is_asked_again(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request.url.path)
        return httpx2.Response(200, json={"id": ACCOUNT_ID})

    for _ in range(2):
        resolved = Preflight(hook=_hook(monkeypatch, handler)).resolve(ACCOUNT_ID)
        assert resolved.source == "unresolved"
    assert len(seen) == 2


async def test_sync_and_async_lookups_share_the_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    hook = _hook(monkeypatch, _server(seen))
    try:
        assert (await Preflight(hook=hook).aresolve(OTHER)).name == "hubspot"
        assert _task(_hook(monkeypatch, _server(seen)), OTHER) == "hubspot"  # sync: remembered
        assert _task(_hook(monkeypatch, _server(seen))) == "hubspot"  # sync lookup
        resolved = await Preflight(hook=hook).aresolve(ACCOUNT_ID)  # async: remembered
        assert (resolved.name, resolved.source) == ("hubspot", "account")
    finally:
        await hook.aclose()
    assert [s.rsplit("/", 1)[-1] for s in seen] == [OTHER, ACCOUNT_ID]


def test_cache_ttl_bound_and_key() -> None:
    clock = Clock()
    cache = IntegrationCache(max_entries=2, ttl_seconds=60.0, clock=clock)
    a = IntegrationCache.key("https://api.truto.one", TOKEN, "a")
    b = IntegrationCache.key("https://api.truto.one", TOKEN, "b")
    c = IntegrationCache.key("https://api.truto.one", TOKEN, "c")
    assert TOKEN not in repr(a)  # a fingerprint, never the token
    assert a != IntegrationCache.key("https://api.truto.one", TOKEN + "x", "a")
    assert cache.get(a) is None  # miss
    cache.put(a, "hubspot")
    assert cache.get(a) == "hubspot"  # hit
    clock.now += 59.9
    assert cache.get(a) == "hubspot"
    clock.now += 0.1
    assert cache.get(a) is None and len(cache) == 0  # expired and dropped
    cache.put(a, "hubspot")
    cache.put(b, "pipedrive")
    cache.get(a)  # a is the most recently used
    cache.put(c, "attio")  # over the bound: b (least recently used) goes
    assert (cache.get(a), cache.get(b), cache.get(c)) == ("hubspot", None, "attio")


def test_tls_context_built_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    import httpx2

    from truto_airflow.hooks import _clients as hook_module  # where the TLS cache lives

    # Count httpx2's public builder, which the hook calls: what it does inside differs between
    # httpx2 releases (2.14, the last for Python 3.10, uses truststore; 2.15 asks httpcore2).
    built: list[ssl.SSLContext] = []
    original = httpx2.create_ssl_context

    def counting(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        built.append(original(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(httpx2, "create_ssl_context", counting)
    monkeypatch.setattr(hook_module, "_SSL_CONTEXTS", {}, raising=False)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    seen: list[str] = []
    for token in ("t1-aaaaaaaa", "t2-bbbbbbbb", "t3-cccccccc"):  # three tasks' clients
        hook = _hook(monkeypatch, _server(seen), token=token)
        hook.get_conn()
        hook.close()
    assert len(built) == 1


# -- across processes: the worker's cache files -------------------------------------------------

SECOND_PROCESS = """
import json, sys
import httpx2
from truto_airflow.hooks.truto import TrutoHook
from truto_airflow.preflight import Preflight
from truto_airflow.retry import RetryPolicy

seen = []

def handler(request):
    seen.append(request.url.path)
    return httpx2.Response(200, json={"integration": {"name": "pipedrive"}})

out = {}
for conn_id in ("truto_default", "truto_private"):
    hook = TrutoHook(conn_id, transport=httpx2.MockTransport(handler),
                     retry_policy=RetryPolicy(max_retries=0))
    before = len(seen)
    out[conn_id] = [Preflight(hook=hook).resolve(sys.argv[1]).name, len(seen) - before]
print("RESULT " + json.dumps(out))
"""


def _files(directory: Path) -> list[Path]:
    return sorted(directory.rglob("*")) if directory.exists() else []


def test_a_second_process_reuses_the_lookup(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Airflow runs each task in a fresh process: the next one finds the account on disk and
    makes no lookup; a connection with ``integration_cache: false`` does not share it."""
    monkeypatch.setenv("TRUTO_AIRFLOW_CACHE_DIR", str(tmp_path))
    seen: list[str] = []
    assert _task(_hook(monkeypatch, _server(seen))) == "hubspot"
    assert len(seen) == 1
    env = {
        **os.environ,
        "AIRFLOW_CONN_TRUTO_DEFAULT": truto_conn_json(),
        "AIRFLOW_CONN_TRUTO_PRIVATE": truto_conn_json(extra={"integration_cache": False}),
    }
    done = subprocess.run(
        [sys.executable, "-c", SECOND_PROCESS, ACCOUNT_ID],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert line is not None, done.stderr[-3000:]
    # shared: HubSpot from the file, zero lookups; private: its own lookup (the handler's answer)
    assert json.loads(line[7:]) == {
        "truto_default": ["hubspot", 0],
        "truto_private": ["pipedrive", 1],
    }


def test_a_fresh_process_cache_reads_the_file_then_memory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TRUTO_AIRFLOW_CACHE_DIR", str(tmp_path))
    seen: list[str] = []
    _task(_hook(monkeypatch, _server(seen)))
    INTEGRATIONS.clear()  # what a new task process starts with
    reads: list[Any] = []
    store = INTEGRATIONS.store
    assert store is not None
    original = store.get
    monkeypatch.setattr(store, "get", lambda key: reads.append(key) or original(key))
    for _ in range(3):
        assert _task(_hook(monkeypatch, _server(seen))) == "hubspot"
    assert len(seen) == 1  # no lookup after the first process's
    assert len(reads) == 1  # the file once, then this process's memory


def test_cache_file_never_holds_the_token_and_is_private(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    root = tmp_path / "cache"
    monkeypatch.setenv("TRUTO_AIRFLOW_CACHE_DIR", str(root))
    old_umask = os.umask(0)  # a permissive umask must not widen the files
    try:
        _task(_hook(monkeypatch, _server([])))
    finally:
        os.umask(old_umask)
    files = [f for f in _files(root) if f.is_file()]
    assert len(files) == 1
    (path,) = files
    fingerprint = IntegrationCache.key("https://api.truto.one", TOKEN, ACCOUNT_ID).fingerprint
    text = path.read_text()
    for secret in (TOKEN, TOKEN[:12], fingerprint, fingerprint[:16], ACCOUNT_ID):
        assert secret not in text and secret not in str(path.relative_to(tmp_path))
    assert set(json.loads(text)) == {"integration", "expires_at"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert not [f for f in _files(root) if f.name.startswith(".tmp-")]  # no temporary left


CORRUPT: list[Any] = [
    b"",
    b"{",
    b"\xff\xfe not utf-8",
    b"null",
    b"[]",
    b'"hubspot"',
    {"integration": 5, "expires_at": 9e9},
    {"integration": "", "expires_at": 9e9},
    {"integration": "hub\x00spot", "expires_at": 9e9},
    {"integration": "x" * 201, "expires_at": 9e9},
    {"integration": "pipedrive"},
    {"integration": "pipedrive", "expires_at": "soon"},
    {"integration": "pipedrive", "expires_at": True},
    {"integration": "pipedrive", "expires_at": float("nan")},
    {"integration": "pipedrive", "expires_at": 1.0},  # expired
    {"integration": "pipedrive", "expires_at": 1e18},  # further ahead than a TTL
    {"integration": "pipedrive", "expires_at": 9e9, "pad": "x" * 5000},  # too big
]


@pytest.mark.parametrize("content", CORRUPT)
def test_a_corrupt_or_stale_file_is_ignored_and_rewritten(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, content: Any
) -> None:
    monkeypatch.setenv("TRUTO_AIRFLOW_CACHE_DIR", str(tmp_path))
    hook = _hook(monkeypatch, _server([]))
    key = lookup_key(hook, ACCOUNT_ID)
    store = IntegrationFileStore()
    assert key is not None
    path = store.path(key)
    assert path is not None
    raw = content if isinstance(content, bytes) else json.dumps(content, allow_nan=True).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, raw)
    os.close(fd)
    seen: list[str] = []
    assert _task(_hook(monkeypatch, _server(seen))) == "hubspot"  # never "pipedrive"
    assert len(seen) == 1
    assert store.get(key) == "hubspot"  # rewritten with the real answer


def test_a_file_others_may_write_or_a_symlink_is_not_trusted(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TRUTO_AIRFLOW_CACHE_DIR", str(tmp_path))
    key = IntegrationCache.key("https://api.truto.one", TOKEN, ACCOUNT_ID)
    store = IntegrationFileStore()
    store.put(key, "hubspot")
    path = store.path(key)
    assert path is not None and store.get(key) == "hubspot"
    path.chmod(0o644)
    assert store.get(key) is None
    planted = tmp_path / "planted.json"
    planted.write_text(json.dumps({"integration": "pipedrive", "expires_at": time.time() + 60}))
    planted.chmod(0o600)
    path.unlink()
    path.symlink_to(planted)
    assert store.get(key) is None


def test_a_shared_or_foreign_directory_is_tightened_or_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TRUTO_AIRFLOW_CACHE_DIR", str(tmp_path))
    (tmp_path / "integrations").mkdir(mode=0o755)
    (tmp_path / "integrations").chmod(0o777)
    assert shared_cache_directory() == tmp_path / "integrations"
    assert stat.S_IMODE((tmp_path / "integrations").stat().st_mode) == 0o700
    # a symlinked directory (someone else's place) is not used
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "integrations").symlink_to(elsewhere)
    monkeypatch.setenv("TRUTO_AIRFLOW_CACHE_DIR", str(linked))
    assert shared_cache_directory() is None
    # not creatable (a file where the directory should be): no files, lookups still work
    blocked = tmp_path / "blocked"
    blocked.write_text("")
    monkeypatch.setenv("TRUTO_AIRFLOW_CACHE_DIR", str(blocked))
    assert shared_cache_directory() is None
    seen: list[str] = []
    assert _task(_hook(monkeypatch, _server(seen))) == "hubspot"
    assert len(seen) == 1


def test_no_files_where_ownership_cannot_be_checked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TRUTO_AIRFLOW_CACHE_DIR", str(tmp_path))
    monkeypatch.delattr(os, "geteuid")  # as on Windows
    seen: list[str] = []
    assert _task(_hook(monkeypatch, _server(seen))) == "hubspot"
    assert shared_cache_directory() is None
    assert not _files(tmp_path)


@pytest.mark.parametrize("code", [401, 403, 404, 500])
def test_a_failed_lookup_writes_no_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, code: int
) -> None:
    monkeypatch.setenv("TRUTO_AIRFLOW_CACHE_DIR", str(tmp_path))
    with pytest.raises(TrutoAPIError):
        _task(_hook(monkeypatch, _server([], {ACCOUNT_ID: code})))
    assert not [f for f in _files(tmp_path) if f.is_file()]


def test_an_unresolved_answer_writes_no_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TRUTO_AIRFLOW_CACHE_DIR", str(tmp_path))
    hook = _hook(monkeypatch, lambda request: httpx2.Response(200, json={"id": ACCOUNT_ID}))
    assert Preflight(hook=hook).resolve(ACCOUNT_ID).source == "unresolved"
    assert not [f for f in _files(tmp_path) if f.is_file()]


@pytest.mark.parametrize("switch", ["off", "0", "false", " OFF "])
def test_the_environment_switch_turns_the_files_off(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, switch: str
) -> None:
    monkeypatch.setenv("TRUTO_AIRFLOW_CACHE_DIR", str(tmp_path))
    key = IntegrationCache.key("https://api.truto.one", TOKEN, ACCOUNT_ID)
    IntegrationFileStore().put(key, "pipedrive")  # written before the switch
    monkeypatch.setenv("TRUTO_AIRFLOW_INTEGRATION_CACHE", switch)
    seen: list[str] = []
    assert _task(_hook(monkeypatch, _server(seen))) == "hubspot"  # the file is not read
    assert len(seen) == 1
    assert len([f for f in _files(tmp_path) if f.is_file()]) == 1  # nor rewritten


def test_the_connection_extra_keeps_lookups_in_the_process(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TRUTO_AIRFLOW_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv(
        "AIRFLOW_CONN_TRUTO_PRIVATE", truto_conn_json(extra={"integration_cache": "false"})
    )
    seen: list[str] = []
    hook = TrutoHook(
        "truto_private",
        transport=httpx2.MockTransport(_server(seen)),
        retry_policy=RetryPolicy(max_retries=0),
    )
    assert _task(hook) == "hubspot" and _task(hook) == "hubspot"
    assert len(seen) == 1  # still remembered in this process
    assert not [f for f in _files(tmp_path) if f.is_file()]


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, True), ("", True), (True, True), ("on", True), (False, False), ("false", False)],
)
def test_integration_cache_extra_values(value: Any, expected: bool) -> None:
    extra = {} if value is None else {"integration_cache": value}
    settings = TrutoConnectionSettings.from_connection(
        host=None, password=TOKEN, extra=extra, conn_id="c"
    )
    assert settings.integration_cache is expected


@pytest.mark.parametrize("value", ["maybe", 2, [], {"a": 1}])
def test_integration_cache_extra_refuses_what_is_not_a_flag(value: Any) -> None:
    with pytest.raises(TrutoConfigError, match="integration_cache"):
        TrutoConnectionSettings.from_connection(
            host=None, password=TOKEN, extra={"integration_cache": value}, conn_id="c"
        )


def test_file_store_ttl_follows_the_clock(tmp_path: Path) -> None:
    clock = Clock()
    store = IntegrationFileStore(ttl_seconds=60.0, clock=clock, directory=lambda: tmp_path)
    key = IntegrationCache.key("https://api.truto.one", TOKEN, ACCOUNT_ID)
    store.put(key, "hubspot")
    clock.now += 59.9
    assert store.get(key) == "hubspot"
    clock.now += 0.1
    assert store.get(key) is None
