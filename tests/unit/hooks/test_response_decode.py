"""A 2xx that is not Truto's JSON object is not a success: a typed, one-line, redacted error."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx2
import pytest

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
