"""Per-task overhead: what a worker process remembers across tasks (issue 12).

* Each account's integration (immutable) is looked up once per process, per base URL and token
  (``preflight.INTEGRATIONS``), for sync and async lookups alike; failures are never remembered.
* The TLS context (reading the CA bundle) is built once per process, not once per task's client.
"""

from __future__ import annotations

import ssl
from typing import Any

import httpx2
import pytest

from tests.conftest import ACCOUNT_ID, TOKEN, truto_conn_json
from truto_airflow.exceptions import TrutoAPIError
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
