"""TrutoHook against httpx2.MockTransport: the wire format, retries, errors and secrets."""

from __future__ import annotations

import datetime as dt
import email.utils
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

import httpx2
import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import ACCOUNT_ID, TOKEN, truto_conn_json
from truto_airflow import __version__
from truto_airflow.exceptions import (
    TrutoAccountBlockedError,
    TrutoAPIError,
    TrutoAuthError,
    TrutoConfigError,
    TrutoInputError,
    TrutoMethodNotAllowedError,
    TrutoNetworkError,
    TrutoNotFoundError,
    TrutoRateLimitError,
    TrutoServerError,
    TrutoValidationError,
)
from truto_airflow.hooks.truto import TrutoHook, opportunity_path
from truto_airflow.retry import RetryPolicy

Handler = Callable[[httpx2.Request], httpx2.Response]
OPP = {"id": "123", "name": "Deal", "amount": 10}


class Recorder:
    """A MockTransport handler that replays scripted responses and records requests."""

    def __init__(self, *responses: httpx2.Response | Exception) -> None:
        self.responses = list(responses)
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        nxt = self.responses.pop(0) if len(self.responses) > 1 else self.responses[0]
        if isinstance(nxt, Exception):
            raise nxt
        return nxt


def error(status: int, message: str = "nope", **extra: Any) -> httpx2.Response:
    headers = extra.pop("headers", {})
    return httpx2.Response(
        status,
        json={"statusCode": status, "error": "Err", "message": message, **extra},
        headers=headers,
    )


@pytest.fixture
def waits() -> list[float]:
    return []


@pytest.fixture
def make_hook(truto_conn: str, waits: list[float]) -> Callable[..., tuple[TrutoHook, Recorder]]:
    def factory(
        *responses: httpx2.Response | Exception, **kwargs: Any
    ) -> tuple[TrutoHook, Recorder]:
        recorder = Recorder(*(responses or (httpx2.Response(200, json=OPP),)))
        policy = kwargs.pop("retry_policy", None) or RetryPolicy(
            max_retries=kwargs.pop("max_retries", 3), sleep=waits.append, backoff_base=0.5
        )
        hook = TrutoHook(
            truto_conn, transport=httpx2.MockTransport(recorder), retry_policy=policy, **kwargs
        )
        return hook, recorder

    return factory


# -- connection -------------------------------------------------------------------------------


def test_constructor_does_no_io(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_TRUTO_DEFAULT", raising=False)
    hook = TrutoHook()  # no connection exists: constructing must not look it up
    assert hook.truto_conn_id == "truto_default"
    with pytest.raises(AirflowException):
        _ = hook.settings


def test_settings_from_json_connection(truto_conn: str) -> None:
    settings = TrutoHook(truto_conn).settings
    assert settings.base_url == "https://api.truto.one"
    assert settings.integrated_account_id == ACCOUNT_ID
    assert settings.timeout == 60.0 and settings.max_retries == 5
    assert TOKEN not in repr(settings) and TOKEN not in str(settings)


def test_settings_from_uri_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_TRUTO_URI",
        f"truto://:{TOKEN}@api.truto.one/?integrated_account_id={ACCOUNT_ID}&timeout=12.5&max_retries=2",
    )
    settings = TrutoHook("truto_uri").settings
    assert settings.base_url == "https://api.truto.one"
    assert settings.token == TOKEN
    assert (settings.timeout, settings.max_retries) == (12.5, 2)
    assert settings.integrated_account_id == ACCOUNT_ID


def test_default_base_url_when_host_is_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_T", json.dumps({"conn_type": "truto", "password": "x" * 12}))
    assert TrutoHook("t").settings.base_url == "https://api.truto.one"


@pytest.mark.parametrize(
    "host",
    ["http://127.0.0.1:8765", "http://localhost:9", "http://[::1]:8080", "https://eu.example"],
)
def test_allowed_base_urls(monkeypatch: pytest.MonkeyPatch, host: str) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_T", truto_conn_json(host))
    assert TrutoHook("t").settings.base_url == host


@pytest.mark.parametrize(
    ("host", "fragment"),
    [
        ("http://api.truto.one", "plain http"),
        ("http://10.0.0.5:8080", "plain http"),
        ("ftp://api.truto.one", "https://"),
        ("https://api.truto.one/?token=x", "bare base URL"),
    ],
)
def test_refused_base_urls_fail_before_sending(
    monkeypatch: pytest.MonkeyPatch, host: str, fragment: str
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_T", truto_conn_json(host))
    recorder = Recorder(httpx2.Response(200, json=OPP))
    hook = TrutoHook("t", transport=httpx2.MockTransport(recorder))
    with pytest.raises(TrutoConfigError, match=fragment) as info:
        hook.update_opportunity("1", {"amount": 1})
    assert isinstance(info.value, AirflowFailException)
    assert recorder.requests == []
    assert TOKEN not in str(info.value)


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ({"timeout": "soon"}, "'timeout' must be a number"),
        ({"timeout": 0}, "'timeout' must be >="),
        ({"max_retries": 2.5}, "whole number"),
        ({"max_retries": 99}, "whole number"),
        ({"max_retries": -1}, "whole number from 0 to 20"),
        ({"max_retries": "nan"}, "whole number from 0 to 20"),
        ({"timeout": "nan"}, "'timeout' must be >="),
        ({"integrated_account_id": "acct-1"}, "not a UUID"),
    ],
)
def test_bad_connection_extras_name_the_field(
    monkeypatch: pytest.MonkeyPatch, extra: dict[str, Any], fragment: str
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_T", truto_conn_json(extra=extra))
    with pytest.raises(TrutoConfigError, match=fragment):
        _ = TrutoHook("t").settings


def test_missing_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_T", truto_conn_json(token=""))
    with pytest.raises(TrutoConfigError, match="no API token"):
        _ = TrutoHook("t").settings


def test_hook_arguments_override_connection_extras(truto_conn: str) -> None:
    hook = TrutoHook(truto_conn, timeout=3, max_retries=0)
    assert (hook.settings.timeout, hook.settings.max_retries) == (3.0, 0)
    assert hook.retry_policy.max_retries == 0


# -- the request on the wire ------------------------------------------------------------------


def test_update_opportunity_wire_format(make_hook: Any) -> None:
    hook, rec = make_hook()
    result = hook.update_opportunity(
        "deal/42?x#y",
        {"amount": 5, "stage": {"id": "s1"}, "description": None},
        response_format="unified",
        ignore_remote_data=True,
        exclude_fields=["remote_data", "urls"],
        remote_query={"properties": ["a", "b"], "filter": {"x": {"y": 1}}},
    )
    assert result == OPP
    (req,) = rec.requests
    assert req.method == "PATCH"
    assert req.url.raw_path.split(b"?")[0] == b"/unified/crm/opportunities/deal%2F42%3Fx%23y"
    assert list(req.url.params.multi_items()) == [
        ("integrated_account_id", ACCOUNT_ID),
        ("truto_response_format", "unified"),
        ("truto_ignore_remote_data", "true"),
        ("truto_exclude_fields[]", "remote_data"),
        ("truto_exclude_fields[]", "urls"),
        ("remote_query[properties][]", "a"),
        ("remote_query[properties][]", "b"),
        ("remote_query[filter][x][y]", "1"),
    ]
    assert req.headers["authorization"] == f"Bearer {TOKEN}"
    assert req.headers["user-agent"] == f"truto-airflow/{__version__}"
    assert req.headers["content-type"] == "application/json"
    assert req.headers["accept"] == "application/json"
    assert req.headers["idempotency-key"].startswith("truto-airflow-")
    assert json.loads(req.content) == {"amount": 5, "stage": {"id": "s1"}, "description": None}


def test_explicit_account_overrides_connection_default(make_hook: Any) -> None:
    hook, rec = make_hook()
    other = "0b5c54c1-8c5b-4d3e-9f0e-1c2d3e4f5a6b"
    hook.update_opportunity("1", {"amount": 1}, integrated_account_id=other)
    assert rec.requests[0].url.params["integrated_account_id"] == other


def test_account_required_when_connection_has_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_T",
        json.dumps({"conn_type": "truto", "host": "https://api.truto.one", "password": TOKEN}),
    )
    rec = Recorder(httpx2.Response(200, json=OPP))
    hook = TrutoHook("t", transport=httpx2.MockTransport(rec))
    with pytest.raises(TrutoInputError, match="integrated_account_id is required"):
        hook.update_opportunity("1", {"amount": 1})
    assert rec.requests == []


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"opportunity_id": ""}, "opportunity_id is empty"),
        ({"opportunity_id": "   "}, "opportunity_id is empty"),
        ({"opportunity_id": None}, "must be a string"),
        ({"opportunity_id": "a\nb"}, "control characters"),
        ({"body": {}}, "no fields"),
        ({"body": {"amout": 1}}, "unknown field 'amout'"),
        ({"integrated_account_id": "nope"}, "not a UUID"),
        ({"response_format": "xml"}, "response_format"),
        ({"remote_query": {"x": float("nan")}}, r"remote_query\[x\]"),
        ({"idempotency_key": " "}, "idempotency_key"),
    ],
)
def test_bad_input_fails_before_any_request(
    make_hook: Any, kwargs: dict[str, Any], fragment: str
) -> None:
    hook, rec = make_hook()
    args: dict[str, Any] = {"opportunity_id": "1", "body": {"amount": 1}, **kwargs}
    with pytest.raises(TrutoInputError, match=fragment) as info:
        hook.update_opportunity(args.pop("opportunity_id"), args.pop("body"), **args)
    assert isinstance(info.value, AirflowFailException)
    assert rec.requests == []


def test_generic_request_body_sends_date_times_as_iso_text(make_hook: Any) -> None:
    """``hook.request(json=...)`` has no model after it: date-times become ISO 8601 text (naive
    as UTC, as in custom_fields) instead of a raw TypeError from the JSON encoder mid-send."""
    hook, rec = make_hook(httpx2.Response(200, json={"ok": True}))
    when = dt.datetime(2026, 1, 2, 3, 4)
    hook.request("POST", "/x", json={"when": when, "day": dt.date(2026, 1, 2)})
    assert json.loads(rec.requests[0].content) == {
        "when": "2026-01-02T03:04:00+00:00",
        "day": "2026-01-02",
    }


def test_generic_request_body_with_an_impossible_date_time_is_an_input_error(
    make_hook: Any,
) -> None:
    hook, rec = make_hook()
    far = dt.datetime(2026, 1, 2, tzinfo=dt.timezone(dt.timedelta(hours=20)))
    with pytest.raises(TrutoInputError, match=r"json\.when"):
        hook.request("POST", "/x", json={"when": far})
    assert rec.requests == []


@given(
    st.text(min_size=1, max_size=30).filter(
        lambda s: s.strip() and s.isprintable() and s not in {".", ".."}
    )
)
def test_any_id_is_exactly_one_path_segment(opportunity_id: str) -> None:
    path = opportunity_path(opportunity_id)
    prefix = "/unified/crm/opportunities/"
    assert path.startswith(prefix)
    segment = path[len(prefix) :]
    assert "/" not in segment and "?" not in segment and "#" not in segment
    assert unquote(segment) == opportunity_id
    url = httpx2.URL("https://api.truto.one").join(path)
    assert url.path.startswith(prefix) and url.raw_path.decode().count("/") == 4


@pytest.mark.parametrize("dots", [".", ".."])
def test_dot_segment_ids_are_refused(make_hook: Any, dots: str) -> None:
    # Encoding is not enough: %2E%2E is a dot-segment to yarl (aiohttp) and WHATWG parsers.
    hook, rec = make_hook()
    with pytest.raises(TrutoInputError, match="not an id"):
        hook.update_opportunity(dots, {"amount": 1})
    assert rec.requests == []


@pytest.mark.parametrize("dots", ["...", "....", ".a", "a.."])
def test_other_dot_ids_cannot_leave_the_route(make_hook: Any, dots: str) -> None:
    hook, rec = make_hook()
    hook.update_opportunity(dots, {"amount": 1})
    raw = rec.requests[0].url.raw_path.split(b"?")[0].decode()
    assert raw.startswith("/unified/crm/opportunities/") and unquote(raw.rsplit("/", 1)[1]) == dots


def test_integer_ids_are_accepted(make_hook: Any) -> None:
    hook, rec = make_hook()
    hook.update_opportunity(12345, {"amount": 1})  # type: ignore[arg-type]
    assert rec.requests[0].url.path == "/unified/crm/opportunities/12345"


# -- retries ----------------------------------------------------------------------------------


def test_429_waits_for_retry_after_seconds(make_hook: Any, waits: list[float], capfd: Any) -> None:
    hook, rec = make_hook(error(429, headers={"Retry-After": "7"}), httpx2.Response(200, json=OPP))
    assert hook.update_opportunity("1", {"amount": 1}) == OPP
    assert waits == [7.0]
    assert len(rec.requests) == 2
    keys = {r.headers["idempotency-key"] for r in rec.requests}
    assert len(keys) == 1  # the same key on every attempt
    out = "".join(capfd.readouterr())
    assert "HTTP 429 (attempt 1 of 4); retrying in 7.00s" in out
    assert TOKEN not in out


def test_429_waits_for_retry_after_http_date(make_hook: Any, waits: list[float]) -> None:
    when = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=30)
    date = email.utils.format_datetime(when, usegmt=True)
    hook, _ = make_hook(error(429, headers={"Retry-After": date}), httpx2.Response(200, json=OPP))
    hook.update_opportunity("1", {"amount": 1})
    assert 25 <= waits[0] <= 30


def test_429_falls_back_to_ratelimit_reset_then_backoff(make_hook: Any, waits: list[float]) -> None:
    hook, _ = make_hook(
        error(429, headers={"ratelimit-reset": "4"}), error(429), httpx2.Response(200, json=OPP)
    )
    hook.update_opportunity("1", {"amount": 1})
    assert waits[0] == 4.0
    assert 0 <= waits[1] <= 1.0  # full jitter on the 2nd attempt: [0, 0.5 * 2]


def test_waits_are_capped(truto_conn: str, waits: list[float]) -> None:
    rec = Recorder(error(429, headers={"Retry-After": "3600"}), httpx2.Response(200, json=OPP))
    policy = RetryPolicy(max_retries=2, max_wait=20, sleep=waits.append)
    TrutoHook(
        truto_conn, transport=httpx2.MockTransport(rec), retry_policy=policy
    ).update_opportunity("1", {"amount": 1})
    assert waits == [20.0]


def test_total_wait_is_capped(truto_conn: str, waits: list[float]) -> None:
    rec = Recorder(error(429, headers={"Retry-After": "50"}))
    policy = RetryPolicy(max_retries=10, max_total=120, sleep=waits.append)
    hook = TrutoHook(truto_conn, transport=httpx2.MockTransport(rec), retry_policy=policy)
    with pytest.raises(TrutoRateLimitError):
        hook.update_opportunity("1", {"amount": 1})
    assert sum(waits) <= 120 and len(rec.requests) < 11


@pytest.mark.parametrize("status", [500, 502, 504])
def test_server_errors_are_retried(make_hook: Any, status: int, waits: list[float]) -> None:
    hook, rec = make_hook(error(status), error(status), httpx2.Response(200, json=OPP))
    assert hook.update_opportunity("1", {"amount": 1}) == OPP
    assert len(rec.requests) == 3 and len(waits) == 2
    assert all(0 <= w <= 0.5 * 2**i for i, w in enumerate(waits))


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, TrutoValidationError),
        (401, TrutoAuthError),
        (403, TrutoAuthError),
        (404, TrutoNotFoundError),
        (405, TrutoMethodNotAllowedError),
        (409, TrutoValidationError),
        (422, TrutoValidationError),
        (503, TrutoAccountBlockedError),
    ],
)
def test_user_fixable_statuses_are_not_retried_and_fail_fast(
    make_hook: Any, status: int, cls: type[TrutoAPIError], waits: list[float]
) -> None:
    hook, rec = make_hook(error(status))
    with pytest.raises(cls) as info:
        hook.update_opportunity("1", {"amount": 1})
    assert len(rec.requests) == 1 and waits == []
    assert isinstance(info.value, AirflowFailException)


def test_exhausted_retries_raise_a_retryable_airflow_error(make_hook: Any) -> None:
    hook, rec = make_hook(error(502))
    with pytest.raises(TrutoServerError) as info:
        hook.update_opportunity("1", {"amount": 1})
    assert len(rec.requests) == 4  # 1 + max_retries
    assert not isinstance(info.value, AirflowFailException)  # Airflow task retries still apply
    assert info.value.attempts == 4 and "after 4 attempts" in str(info.value)


@pytest.mark.parametrize(
    "exc",
    [
        httpx2.ConnectError("refused"),
        httpx2.ReadTimeout("slow"),
        httpx2.RemoteProtocolError("peer closed connection"),
    ],
)
def test_network_errors_are_retried_with_the_same_key(make_hook: Any, exc: Exception) -> None:
    hook, rec = make_hook(exc, httpx2.Response(200, json=OPP))
    assert hook.update_opportunity("1", {"amount": 1}) == OPP
    assert len(rec.requests) == 2
    assert rec.requests[0].headers["idempotency-key"] == rec.requests[1].headers["idempotency-key"]


def test_network_errors_exhausted(make_hook: Any) -> None:
    hook, rec = make_hook(httpx2.ConnectError("refused"))
    with pytest.raises(TrutoNetworkError, match="got no answer after 4 attempt") as info:
        hook.update_opportunity("1", {"amount": 1})
    assert not isinstance(info.value, AirflowFailException)
    assert len(rec.requests) == 4


def test_max_retries_zero_sends_once(make_hook: Any) -> None:
    hook, rec = make_hook(error(500), max_retries=0)
    with pytest.raises(TrutoServerError):
        hook.update_opportunity("1", {"amount": 1})
    assert len(rec.requests) == 1


def test_caller_idempotency_key_is_sent(make_hook: Any) -> None:
    hook, rec = make_hook()
    hook.update_opportunity("1", {"amount": 1}, idempotency_key="my-key-1")
    hook.update_opportunity("1", {"amount": 1})
    hook.update_opportunity("1", {"amount": 1})
    keys = [r.headers["idempotency-key"] for r in rec.requests]
    assert keys[0] == "my-key-1" and keys[1] != keys[2]


# -- errors -----------------------------------------------------------------------------------


def test_truto_error_body_is_parsed(make_hook: Any) -> None:
    body = {
        "statusCode": 400,
        "error": "Bad Request",
        "message": "Missing required fields",
        "truto_is_remote_error": True,
        "raw_response": {"errors": [{"field": "name"}]},
        "truto_error_insight": {
            "missing_required_body_fields": {"description": "...", "value": ["name", "account"]}
        },
    }
    hook, _ = make_hook(httpx2.Response(400, json=body, headers={"ratelimit-remaining": "3"}))
    with pytest.raises(TrutoValidationError) as info:
        hook.update_opportunity("opp-1", {"amount": 1})
    err = info.value
    assert err.status_code == 400 and err.error == "Bad Request"
    assert err.message == "Missing required fields" and err.is_remote_error
    assert err.raw_response == {"errors": [{"field": "name"}]}
    assert err.missing_required_fields == ["name", "account"]
    assert err.headers["ratelimit-remaining"] == "3"
    assert (err.method, err.path) == ("PATCH", "/unified/crm/opportunities/opp-1")
    text = str(err)
    assert "\n" not in text
    assert text.startswith(
        "Truto API error 400 Bad Request on PATCH /unified/crm/opportunities/opp-1"
    )
    assert "missing required body fields: name, account" in text
    assert err.to_dict()["status_code"] == 400


def test_non_json_error_falls_back_to_text_and_is_truncated(make_hook: Any) -> None:
    hook, _ = make_hook(httpx2.Response(404, text="<html>" + "x" * 5000 + "</html>"))
    with pytest.raises(TrutoNotFoundError) as info:
        hook.update_opportunity("1", {"amount": 1})
    assert info.value.message.startswith("<html>")
    assert len(str(info.value)) < 1200 and "more characters" in str(info.value)


def test_token_echoed_by_the_server_is_redacted(make_hook: Any) -> None:
    hook, _ = make_hook(error(401, message=f"token {TOKEN} is invalid", raw_response=TOKEN))
    with pytest.raises(TrutoAuthError) as info:
        hook.update_opportunity("1", {"amount": 1})
    assert TOKEN not in str(info.value) and TOKEN not in repr(info.value.__dict__)
    assert "***" in str(info.value)


# -- other calls ------------------------------------------------------------------------------


def test_get_opportunity(make_hook: Any) -> None:
    hook, rec = make_hook()
    assert hook.get_opportunity("9", ignore_remote_data=True) == OPP
    req = rec.requests[0]
    assert req.method == "GET" and req.url.path == "/unified/crm/opportunities/9"
    assert req.url.params["truto_ignore_remote_data"] == "true"
    assert "idempotency-key" not in req.headers


def test_list_opportunities_follows_cursors_without_mutating_params(make_hook: Any) -> None:
    hook, rec = make_hook(
        httpx2.Response(200, json={"result": [{"id": "1"}], "next_cursor": "c1"}),
        httpx2.Response(200, json={"result": [{"id": "2"}], "next_cursor": None}),
    )
    params = {"sort_by": "name"}
    ids = [o["id"] for o in hook.list_opportunities(params=params, limit=1)]
    assert ids == ["1", "2"]
    assert params == {"sort_by": "name"}
    assert "next_cursor" not in rec.requests[0].url.params
    assert rec.requests[1].url.params["next_cursor"] == "c1"


def test_empty_success_body_is_an_empty_dict(make_hook: Any) -> None:
    hook, _ = make_hook(httpx2.Response(204))
    assert hook.update_opportunity("1", {"amount": 1}) == {}


def test_test_connection_with_account_reads_the_account(make_hook: Any) -> None:
    hook, rec = make_hook(
        httpx2.Response(
            200, json={"id": ACCOUNT_ID, "integration": {"name": "hubspot"}, "status": "active"}
        )
    )
    ok, message = hook.test_connection()
    assert ok and "hubspot" in message and "active" in message
    assert [(r.method, r.url.path) for r in rec.requests] == [
        ("GET", f"/integrated-account/{ACCOUNT_ID}")
    ]


def test_test_connection_without_account_lists_accounts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_T",
        json.dumps({"conn_type": "truto", "host": "https://api.truto.one", "password": TOKEN}),
    )
    rec = Recorder(httpx2.Response(200, json={"result": [], "next_cursor": None}))
    ok, _ = TrutoHook("t", transport=httpx2.MockTransport(rec)).test_connection()
    assert ok
    assert rec.requests[0].method == "GET" and rec.requests[0].url.path == "/integrated-account"
    assert rec.requests[0].url.params["limit"] == "1"


def test_test_connection_failure_message_has_no_token(make_hook: Any) -> None:
    hook, rec = make_hook(error(401, message=f"bad token {TOKEN}"))
    ok, message = hook.test_connection()
    assert not ok and "401" in message and TOKEN not in message
    assert all(r.method == "GET" for r in rec.requests)


def test_integrated_account_lookup_is_cached(make_hook: Any) -> None:
    hook, rec = make_hook(
        httpx2.Response(200, json={"id": ACCOUNT_ID, "integration": {"name": "x"}})
    )
    hook.get_integrated_account()
    hook.get_integrated_account(ACCOUNT_ID)
    assert len(rec.requests) == 1


def test_client_is_pooled_and_closed(make_hook: Any) -> None:
    hook, _ = make_hook()
    with hook:
        first = hook.get_conn()
        hook.update_opportunity("1", {"amount": 1})
        assert hook.get_conn() is first
    assert first.is_closed
    assert hook.get_conn() is not first  # usable again after close


def test_stream_yields_the_body_in_chunks(make_hook: Any) -> None:
    stream = httpx2.ByteStream(b'{"id": "1", "name": "x"}')
    hook, _ = make_hook(
        httpx2.Response(200, stream=stream, headers={"content-type": "application/json"})
    )
    prepared = hook.prepare_update("1", {"amount": 1}, response_format="stream")
    assert ("truto_response_format", "stream") in prepared.params
    with hook.stream(prepared) as response:
        data = b"".join(response.iter_bytes())
    assert json.loads(data) == {"id": "1", "name": "x"}


# -- async ------------------------------------------------------------------------------------


async def test_async_update_retries_with_one_key(truto_conn: str) -> None:
    seen: list[httpx2.Request] = []
    slept: list[float] = []

    async def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        if len(seen) == 1:
            return error(429, headers={"Retry-After": "2"})
        return httpx2.Response(200, json=OPP)

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    hook = TrutoHook(
        truto_conn,
        async_transport=httpx2.MockTransport(handler),
        retry_policy=RetryPolicy(max_retries=2, async_sleep=fake_sleep),
    )
    async with hook.async_session():
        assert await hook.aupdate_opportunity("1", {"amount": 2}) == OPP
        assert await hook.aget_opportunity("1") == OPP
    assert slept == [2.0]
    assert seen[0].headers["idempotency-key"] == seen[1].headers["idempotency-key"]
    assert hook._async_client is None


async def test_async_account_lookup_shares_the_sync_cache(truto_conn: str) -> None:
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(200, json={"id": ACCOUNT_ID, "integration": {"name": "pipedrive"}})

    hook = TrutoHook(
        truto_conn,
        transport=httpx2.MockTransport(handler),
        async_transport=httpx2.MockTransport(handler),
    )
    async with hook.async_session():
        first = await hook.aget_integrated_account()
        assert first["integration"]["name"] == "pipedrive"
        await hook.aget_integrated_account(ACCOUNT_ID)
    hook.get_integrated_account()
    assert [r.url.path for r in seen] == [f"/integrated-account/{ACCOUNT_ID}"]


async def test_async_read_takes_the_same_query_options_as_the_sync_one(truto_conn: str) -> None:
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(200, json=OPP)

    options: dict[str, Any] = {"response_format": "raw", "exclude_fields": ["remote_data"]}
    hook = TrutoHook(
        truto_conn,
        transport=httpx2.MockTransport(handler),
        async_transport=httpx2.MockTransport(handler),
    )
    hook.get_opportunity("1", **options)
    async with hook.async_session():
        await hook.aget_opportunity("1", **options)
    sync, aio = (dict(r.url.params.multi_items()) for r in seen)
    assert sync == aio
    assert sync["truto_response_format"] == "raw"
