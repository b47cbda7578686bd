"""Retry policy decisions, independent of any transport."""

from __future__ import annotations

import datetime as dt

import httpx2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from truto_airflow.exceptions import TrutoAPIError, error_class_for_status
from truto_airflow.retry import RETRY_STATUSES, RetryPolicy, parse_retry_after

NOW = dt.datetime(2026, 11, 28, 12, 0, 0, tzinfo=dt.timezone.utc)


def api_error(status: int, headers: dict[str, str] | None = None) -> TrutoAPIError:
    return error_class_for_status(status)(status_code=status, message="x", headers=headers)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "12"}, 12.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"Retry-After": "-3"}, None),  # garbage: no hint (the caller backs off)
        ({"Retry-After": "Sat, 28 Nov 2026 12:00:30 GMT"}, 30.0),
        ({"Retry-After": "Sat, 28 Nov 2026 11:00:00 GMT"}, 0.0),
        ({"Retry-After": "garbage", "ratelimit-reset": "9"}, 9.0),
        ({"ratelimit-reset": "4"}, 4.0),
        ({"ratelimit-reset": "soon"}, None),
        ({}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(headers, now=NOW) == expected


def test_retryable_statuses_exactly() -> None:
    assert frozenset({429, 500, 502, 504}) == RETRY_STATUSES
    for status in range(400, 600):
        assert RetryPolicy.is_retryable(api_error(status)) is (status in RETRY_STATUSES)


def test_retryable_transport_errors() -> None:
    assert RetryPolicy.is_retryable(httpx2.ConnectError("x"))
    assert RetryPolicy.is_retryable(httpx2.ReadTimeout("x"))
    assert RetryPolicy.is_retryable(httpx2.PoolTimeout("x"))
    assert RetryPolicy.is_retryable(httpx2.RemoteProtocolError("x"))
    assert not RetryPolicy.is_retryable(httpx2.UnsupportedProtocol("x"))
    assert not RetryPolicy.is_retryable(ValueError("x"))


@given(st.integers(min_value=1, max_value=40))
def test_backoff_is_jittered_and_capped(attempt: int) -> None:
    policy = RetryPolicy(backoff_base=0.5, max_wait=30)
    wait = policy.wait_seconds(api_error(500), attempt)
    assert 0.0 <= wait <= min(30.0, 0.5 * 2 ** (attempt - 1))


def test_retry_after_is_capped_by_max_wait() -> None:
    policy = RetryPolicy(max_wait=10)
    assert policy.wait_seconds(api_error(429, {"retry-after": "99"}), 1) == 10.0


@pytest.mark.parametrize(
    "kwargs", [{"max_retries": -1}, {"max_wait": 0}, {"max_total": -1}, {"backoff_base": -1}]
)
def test_invalid_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
