"""The Airflow connection: every field is honoured or refused, never dropped (issue 8, F)."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest
from airflow.sdk.exceptions import AirflowFailException
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import ACCOUNT_ID, TOKEN
from truto_airflow.exceptions import TrutoConfigError
from truto_airflow.hooks.truto import TrutoConnectionSettings, TrutoHook, normalise_base_url
from truto_airflow.retry import RetryPolicy


def _sent_to(monkeypatch: pytest.MonkeyPatch, conn: str) -> httpx2.URL:
    """Where the hook actually sends a request for this AIRFLOW_CONN_T value."""
    monkeypatch.setenv("AIRFLOW_CONN_T", conn)
    seen: list[httpx2.URL] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request.url)
        return httpx2.Response(200, json={"id": "1"})

    hook = TrutoHook(
        "t", transport=httpx2.MockTransport(handler), retry_policy=RetryPolicy(max_retries=0)
    )
    hook.update_opportunity("1", {"amount": 1}, integrated_account_id=ACCOUNT_ID)
    return seen[0]


# -- port -----------------------------------------------------------------------------------------


def test_uri_port_reaches_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    url = _sent_to(monkeypatch, f"truto://:{TOKEN}@127.0.0.1:8765/")
    assert (url.host, url.port) == ("127.0.0.1", 8765)


def test_uri_with_an_encoded_scheme_and_port(monkeypatch: pytest.MonkeyPatch) -> None:
    url = _sent_to(monkeypatch, f"truto://:{TOKEN}@http%3A%2F%2F127.0.0.1:8765")
    assert (url.scheme, url.host, url.port) == ("http", "127.0.0.1", 8765)


def test_json_port_field_reaches_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    conn = {"conn_type": "truto", "host": "http://localhost", "port": 9123, "password": TOKEN}
    url = _sent_to(monkeypatch, json.dumps(conn))
    assert (url.scheme, url.host, url.port) == ("http", "localhost", 9123)


@given(
    port=st.integers(1, 65535),
    host=st.sampled_from(
        ["http://127.0.0.1", "127.0.0.1", "https://eu.example", "eu.example", "http://[::1]", ""]
    ),
    path=st.sampled_from(["", "/", "/truto"]),
)
def test_any_port_is_kept(port: int, host: str, path: str) -> None:
    base = normalise_base_url(f"{host}{path}" if host else host, port=port)
    url = httpx2.URL(base)
    default = {"http": 80, "https": 443}[url.scheme]
    assert (url.port or default) == port
    if host and path.strip("/"):
        assert url.path.rstrip("/") == path


@pytest.mark.parametrize("host", ["http://127.0.0.1:8765", "https://api.truto.one:8443/x"])
def test_same_port_in_host_and_port_field_is_fine(host: str) -> None:
    port = httpx2.URL(host).port
    assert normalise_base_url(host, port=port) == host.rstrip("/")


@pytest.mark.parametrize(
    ("host", "port"),
    [("http://127.0.0.1:8765", 9000), ("https://api.truto.one:8443", 443), ("h.example:1", 2)],
)
def test_disagreeing_ports_are_refused(host: str, port: int) -> None:
    with pytest.raises(TrutoConfigError, match="port") as info:
        normalise_base_url(host, port=port, conn_id="mine")
    assert "mine" in str(info.value) and str(port) in str(info.value)


@pytest.mark.parametrize("port", [0, -1, 65536, 10**6])
def test_impossible_ports_are_refused(port: int) -> None:
    with pytest.raises(TrutoConfigError, match="port"):
        normalise_base_url("https://api.truto.one", port=port)


@pytest.mark.parametrize("host", ["https://api.truto.one:0", "http://127.0.0.1:99999/x"])
def test_impossible_ports_in_the_host_url_are_refused(host: str) -> None:
    with pytest.raises(TrutoConfigError, match="not a TCP port"):
        normalise_base_url(host)


def test_default_https_port_keeps_the_plain_base_url() -> None:
    assert normalise_base_url("https://api.truto.one", port=443) == "https://api.truto.one"
    assert normalise_base_url(None, port=443) == "https://api.truto.one"


# -- other fields ---------------------------------------------------------------------------------


def test_a_uri_path_is_refused_not_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_T", f"truto://:{TOKEN}@api.truto.one/v1")
    with pytest.raises(TrutoConfigError, match="schema") as info:
        _ = TrutoHook("t").settings
    assert "'v1'" in str(info.value) and "host" in str(info.value)


def test_token_in_login_gets_a_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_T", f"truto://{TOKEN}@api.truto.one")
    with pytest.raises(TrutoConfigError, match="password") as info:
        _ = TrutoHook("t").settings
    assert "truto://:" in str(info.value)
    assert TOKEN not in str(info.value)


def test_settings_keep_the_port_through_from_connection() -> None:
    settings = TrutoConnectionSettings.from_connection(
        host="http://127.0.0.1", port=8765, password=TOKEN, extra={}, conn_id="c"
    )
    assert settings.base_url == "http://127.0.0.1:8765"


# -- missing connection ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("conn_id", "env"),
    [("truto_default", "AIRFLOW_CONN_TRUTO_DEFAULT"), ("crm-eu", "AIRFLOW_CONN_CRM-EU")],
)
def test_missing_connection_fails_at_once_with_a_hint(
    monkeypatch: pytest.MonkeyPatch, conn_id: str, env: str
) -> None:
    monkeypatch.delenv(env, raising=False)
    sent: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        sent.append(request)
        return httpx2.Response(200, json={})

    hook = TrutoHook(conn_id, transport=httpx2.MockTransport(handler))
    with pytest.raises(TrutoConfigError) as info:
        hook.update_opportunity("1", {"amount": 1}, integrated_account_id=ACCOUNT_ID)
    assert isinstance(info.value, AirflowFailException)  # no Airflow retries
    text = str(info.value)
    assert repr(conn_id) in text
    assert "'truto'" in text and env in text and "AIRFLOW_CONN_TRUTO_DEFAULT" in text
    assert sent == []


def test_missing_connection_fails_the_operator_without_retries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from truto_airflow.operators.opportunities import UpdateOpportunityOperator

    monkeypatch.delenv("AIRFLOW_CONN_TRUTO_DEFAULT", raising=False)
    op = UpdateOpportunityOperator(
        task_id="t", opportunity_id="1", body={"amount": 1}, integrated_account_id=ACCOUNT_ID
    )
    with pytest.raises(TrutoConfigError, match="AIRFLOW_CONN_TRUTO_DEFAULT"):
        op.execute({})  # type: ignore[arg-type]


def test_test_connection_reports_a_missing_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_NOPE", raising=False)
    ok, message = TrutoHook("nope").test_connection()
    assert not ok and "AIRFLOW_CONN_NOPE" in message


@pytest.mark.parametrize(
    "fields",
    [
        {"schema": "TOKEN"},
        {"host": "ftp://TOKEN.example"},
        {"host": "http://TOKEN.example.com"},
        {"host": "https://api.truto.one:99999/TOKEN"},  # port out of range
        {"host": "https://api.truto.one/?t=TOKEN"},
        {"extra": {"integrated_account_id": "TOKEN"}},
        {"extra": {"timeout": "TOKEN"}},
    ],
)
def test_a_token_pasted_into_another_field_never_reaches_the_error(
    fields: dict[str, object],
) -> None:
    token = "tok3n-Secret-77"
    kwargs: dict[str, Any] = {"host": None, "extra": {}, "conn_id": "c", "password": token}
    for key, value in fields.items():
        kwargs[key] = (
            {k: str(v).replace("TOKEN", token) for k, v in value.items()}
            if isinstance(value, dict)
            else str(value).replace("TOKEN", token)
        )
    with pytest.raises(TrutoConfigError) as info:
        TrutoConnectionSettings.from_connection(**kwargs)
    assert token.lower() not in str(info.value).lower()
