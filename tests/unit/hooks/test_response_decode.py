"""A 2xx that is not Truto's JSON object is not a success: a typed, one-line, redacted error."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import TOKEN
from truto_airflow.exceptions import TrutoAPIError, TrutoResponseError
from truto_airflow.hooks.truto import TrutoHook
from truto_airflow.retry import RetryPolicy

LOGIN_PAGE = (
    f"<html>\n<head><title>Sign in</title></head>\n<body>token={TOKEN}\n"
    + "<p>x</p>\n" * 500
    + "</body></html>"
)

NOT_OBJECTS: dict[str, httpx2.Response] = {
    "html-login-page": httpx2.Response(200, text=LOGIN_PAGE, headers={"content-type": "text/html"}),
    "truncated-json": httpx2.Response(
        200, content=b'{"id": "123", "amount": 1', headers={"content-type": "application/json"}
    ),
    "json-list": httpx2.Response(200, json=[{"id": "123"}]),
    "json-string": httpx2.Response(200, json="ok"),
    "json-null": httpx2.Response(200, json=None),
    "empty-200": httpx2.Response(200, content=b""),
    "bad-utf8": httpx2.Response(200, content=b'{"id": "\xff"}'),
    "json-with-token": httpx2.Response(200, json=[TOKEN]),
}


def hook_for(response: httpx2.Response) -> TrutoHook:
    def answer(request: httpx2.Request) -> httpx2.Response:  # a fresh response per request
        return httpx2.Response(
            response.status_code, content=response.content, headers=response.headers
        )

    return TrutoHook(
        transport=httpx2.MockTransport(answer),
        async_transport=httpx2.MockTransport(answer),
        retry_policy=RetryPolicy(max_retries=0),
    )


@pytest.fixture(autouse=True)
def _conn(truto_conn: str) -> str:
    return truto_conn


def check(exc: TrutoAPIError) -> None:
    text = str(exc)
    assert isinstance(exc, TrutoResponseError)
    assert "\n" not in text
    assert TOKEN not in text and TOKEN not in repr(exc.args)
    assert TOKEN not in repr(exc.headers)
    assert len(text) < 1000
    assert "not treated as a success" in text
    assert exc.status_code == 200


@pytest.mark.parametrize("name", sorted(NOT_OBJECTS))
def test_update_refuses_a_2xx_that_is_not_a_json_object(name: str) -> None:
    with hook_for(NOT_OBJECTS[name]) as hook, pytest.raises(TrutoResponseError) as info:
        hook.update_opportunity("123", {"amount": 1})
    check(info.value)


@pytest.mark.parametrize("name", sorted(NOT_OBJECTS))
def test_async_update_and_reads_refuse_it_too(name: str) -> None:
    hook = hook_for(NOT_OBJECTS[name])

    async def go() -> list[BaseException]:
        errors: list[BaseException] = []
        calls: list[Any] = [
            hook.aupdate_opportunity("123", {"amount": 1}),
            hook.aget_opportunity("123"),
        ]
        for call in calls:
            try:
                await call
            except BaseException as exc:
                errors.append(exc)
        await hook.aclose()
        return errors

    errors = asyncio.run(go())
    assert len(errors) == 2
    for exc in errors:
        assert isinstance(exc, TrutoResponseError)
        check(exc)


def test_a_json_object_is_returned() -> None:
    with hook_for(httpx2.Response(200, json={"id": "123", "amount": 1})) as hook:
        assert hook.update_opportunity("123", {"amount": 1}) == {"id": "123", "amount": 1}


def test_raw_format_passes_the_crms_own_body_through() -> None:
    with hook_for(httpx2.Response(200, json=[1, 2])) as hook:
        assert hook.update_opportunity("123", {"amount": 1}, response_format="raw") == [1, 2]


# -- the per-row check: a strict reader first, json.loads for the rest ------------------------

#: Bodies where a strict JSON reader and ``json.loads`` may disagree (encodings, numbers,
#: surrogates, control characters, whitespace, nesting); each must get json.loads's verdict.
EDGE_BODIES: dict[str, bytes] = {
    "object": b'{"id": "1", "amount": 1}',
    "nan": b'{"a": NaN}',
    "infinity": b'{"a": -Infinity}',
    "huge-int": b'{"a": ' + b"9" * 5000 + b"}",  # past Python's int digit limit: not JSON
    "long-int": b'{"a": ' + b"9" * 30 + b"}",
    "huge-float": b'{"a": 1e400}',
    "huge-exponent": b'{"a": 1e99999999999999999999}',
    "long-float": b'{"a": ' + b"1" * 5000 + b".5}",
    "raw-control-char": b'{"a": "x\x01y"}',
    "raw-tab-in-string": b'{"a": "x\ty"}',
    "raw-del": b'{"a": "\x7f"}',
    "invalid-utf8": b'{"a": "\xff"}',
    "overlong-utf8": b'{"a": "\xc0\xaf"}',
    "utf8-surrogate": b'{"a": "\xed\xa0\x80"}',
    "escaped-lone-surrogate": b'{"a": "\\ud800"}',
    "astral": '{"a": "\U0001f600"}'.encode(),
    "utf8-bom": b'\xef\xbb\xbf{"a": 1}',
    "utf16": '{"a": 1}'.encode("utf-16-le"),
    "utf16-bom": '{"a": 1}'.encode("utf-16"),
    "utf32": '{"a": 1}'.encode("utf-32-be"),
    "vertical-tab": b'\x0b{"a": 1}',
    "form-feed": b'{"a": 1}\x0c',
    "nbsp": '\u00a0{"a": 1}'.encode(),
    "trailing-ws": b'{"a": 1} \n\r\t',
    "trailing-nul": b'{"a": 1}\x00',
    "trailing-junk": b'{"a": 1} x',
    "duplicate-keys": b'{"a": 1, "a": 2}',
    "leading-zero": b'{"a": 01}',
    "plus-sign": b'{"a": +1}',
    "bare-fraction": b'{"a": .5}',
    "bad-escape": b'{"a": "\\x"}',
    "non-string-key": b"{1: 2}",
    "python-true": b'{"a": True}',
    "nested-900": b'{"a":' * 900 + b"1" + b"}" * 900,
    "list": b"[{}]",
    "string": b'"{}"',
    "empty": b"",
    "spaces": b"   ",
}


def _verdict(check: Any, content: bytes) -> Any:
    try:
        return check(content)
    except RecursionError:
        return "RecursionError"


def _old_rule(content: bytes) -> bool:
    from truto_airflow.hooks._answers import _parsed

    return isinstance(_parsed(content), dict)


@pytest.mark.parametrize("name", sorted(EDGE_BODIES))
def test_the_fast_object_check_gives_json_loads_verdict(name: str) -> None:
    from truto_airflow.hooks._answers import _is_json_object

    body = EDGE_BODIES[name]
    assert _verdict(_is_json_object, body) == _verdict(_old_rule, body)


@pytest.mark.parametrize("depth", [600, 5_000, 100_000])
def test_deep_nesting_gets_json_loads_verdict(depth: int) -> None:
    """Past msgspec's depth (it refuses 1,000 levels), json.loads decides, whatever
    it says on this Python (3.13 reads 5,000 levels where older ones raise RecursionError)."""
    from truto_airflow.hooks._answers import _is_json_object

    deep = b'{"a":' * depth + b"1" + b"}" * depth
    assert _verdict(_is_json_object, deep) == _verdict(_old_rule, deep)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@st.composite
def _bodies(draw: st.DrawFn) -> bytes:
    """JSON in several spellings (NaN allowed, ASCII-escaped or not, other encodings), then
    perhaps broken: a byte inserted, replaced or cut off."""
    value = draw(st.dictionaries(st.text(), _json_values, max_size=4) | _json_values)
    text = json.dumps(value, ensure_ascii=draw(st.booleans()))
    body = text.encode(draw(st.sampled_from(["utf-8", "utf-8", "utf-16", "utf-32-le"])), "replace")
    edit = draw(st.sampled_from(["none", "insert", "replace", "cut"]))
    if edit != "none" and body:
        at = draw(st.integers(0, len(body) - 1))
        byte = bytes([draw(st.integers(0, 255))])
        body = {
            "insert": body[:at] + byte + body[at:],
            "replace": body[:at] + byte + body[at + 1 :],
            "cut": body[:at],
        }[edit]
    return body


@settings(max_examples=400)
@given(body=_bodies() | st.binary(max_size=40))
def test_the_fast_object_check_agrees_with_json_loads(body: bytes) -> None:
    from truto_airflow.hooks._answers import _is_json_object

    assert _verdict(_is_json_object, body) == _verdict(_old_rule, body)
