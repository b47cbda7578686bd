"""Server wait hints (``Retry-After``, ``ratelimit-reset``): one parser, every wait bounded.

The hook's retry policy and the bulk pacer read the same headers; whatever a server sends, the
wait that follows is finite, never longer than the configured cap, and a hint that is garbage
(negative, NaN, infinite, absurd, non-numeric, a bad date) is ignored for a real backoff,
never taken as "retry now".
"""

from __future__ import annotations

import datetime as dt
import email.utils
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from truto_airflow.bulk.pacer import AccountPacer
from truto_airflow.exceptions import error_class_for_status
from truto_airflow.retry import MAX_HINT_SECONDS, RetryPolicy, parse_retry_after

NOW = dt.datetime(2026, 11, 28, 12, 0, 0, tzinfo=dt.timezone.utc)

GARBAGE = [
    "-1",
    "-0.5",
    "nan",
    "NaN",
    "inf",
    "-inf",
    "Infinity",
    "1e400",
    "1e9",
    "99999999999999999999",
    "1_000",
    "0x10",
    "soon",
    "",
    " ",
    "5 seconds",
    "Sat, 99 Nov 2026 12:00:30 GMT",
    "Mon, 28 Nov 9999 12:00:30 GMT",
    "Sat, 28 Nov 2026 12:00:30",
    "\x00",
]

# Header text a server could send: numbers of every shape, dates, and arbitrary text.
hint_text = st.one_of(
    st.sampled_from(GARBAGE),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.datetimes(min_value=dt.datetime(1970, 1, 2), max_value=dt.datetime(9999, 1, 1)).map(
        lambda d: email.utils.format_datetime(d.replace(tzinfo=dt.timezone.utc), usegmt=True)
    ),
    st.text(max_size=40),
)


def rate_limited(headers: dict[str, str]) -> Exception:
    return error_class_for_status(429)(status_code=429, message="slow down", headers=headers)


@pytest.mark.parametrize("value", GARBAGE)
@pytest.mark.parametrize("name", ["retry-after", "ratelimit-reset"])
def test_garbage_hints_are_no_hint(name: str, value: str) -> None:
    assert parse_retry_after({name: value}, now=NOW) is None


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "12"}, 12.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"Retry-After": " 7 "}, 7.0),
        ({"Retry-After": "0"}, 0.0),
        ({"Retry-After": "Sat, 28 Nov 2026 12:00:30 GMT"}, 30.0),
        ({"Retry-After": "Sat, 28 Nov 2026 11:00:00 GMT"}, 0.0),  # already passed
        ({"Retry-After": "-3", "ratelimit-reset": "9"}, 9.0),
        ({"Retry-After": "nan", "ratelimit-reset": "4"}, 4.0),
        ({"ratelimit-reset": "3600"}, 3600.0),  # a real hint; callers cap it
    ],
)
def test_valid_hints(headers: dict[str, str], expected: float) -> None:
    assert parse_retry_after(headers, now=NOW) == expected


@given(retry_after=hint_text, reset=st.one_of(st.none(), hint_text))
def test_any_hint_parses_to_nothing_or_a_finite_bounded_wait(
    retry_after: str, reset: str | None
) -> None:
    headers = {"retry-after": retry_after, **({"ratelimit-reset": reset} if reset else {})}
    hint = parse_retry_after(headers, now=NOW)
    assert hint is None or (math.isfinite(hint) and 0.0 <= hint <= MAX_HINT_SECONDS)


@given(retry_after=hint_text, attempt=st.integers(min_value=1, max_value=30))
def test_hook_retry_wait_is_capped_and_garbage_backs_off(retry_after: str, attempt: int) -> None:
    policy = RetryPolicy(backoff_base=0.5, max_wait=30.0)
    wait = policy.wait_seconds(rate_limited({"retry-after": retry_after}), attempt)
    assert math.isfinite(wait) and 0.0 <= wait <= 30.0
    if parse_retry_after({"retry-after": retry_after}) is None:
        # A 429 asked us to slow down: at least half the backoff ceiling, never "now".
        assert wait >= min(30.0, 0.5 * 2 ** (attempt - 1)) / 2 > 0


@given(retry_after=hint_text)
def test_pacer_429_block_is_capped_and_garbage_backs_off(retry_after: str) -> None:
    pacer = AccountPacer(backoff_base=1.0, max_wait=60.0)
    assert pacer.acquire(100.0)
    pacer.on_response(100.0, 429, {"retry-after": retry_after})
    block = pacer.blocked_until - 100.0
    assert math.isfinite(block) and 0.0 <= block <= 60.0
    if parse_retry_after({"retry-after": retry_after}) is None:
        assert block == 1.0  # the first backoff step


@given(reset=hint_text)
def test_pacer_proactive_wait_from_ratelimit_reset_is_capped(reset: str) -> None:
    pacer = AccountPacer(max_wait=60.0)
    assert pacer.acquire(0.0)
    headers = {"ratelimit-limit": "5;w=10", "ratelimit-remaining": "0", "ratelimit-reset": reset}
    pacer.on_response(0.0, 200, headers)
    delay = pacer.delay(0.0)
    assert delay <= 60.0 or delay == math.inf
    assert not math.isnan(delay)


def test_ratelimit_reset_of_an_hour_waits_at_most_max_wait() -> None:
    pacer = AccountPacer(max_wait=60.0)
    assert pacer.acquire(0.0)
    pacer.on_response(
        0.0, 200, {"ratelimit-limit": "5", "ratelimit-remaining": "0", "ratelimit-reset": "3600"}
    )
    assert pacer.delay(0.0) == 60.0
    assert pacer.acquire(60.0)  # the budget is probed again after the cap


@pytest.mark.parametrize("value", GARBAGE)
def test_hook_retry_backs_off_on_a_garbage_retry_after(value: str) -> None:
    policy = RetryPolicy(backoff_base=0.5, max_wait=30.0)
    for attempt in (1, 4, 12):
        wait = policy.wait_seconds(rate_limited({"retry-after": value}), attempt)
        ceiling = min(30.0, 0.5 * 2 ** (attempt - 1))
        assert ceiling / 2 <= wait <= ceiling


@pytest.mark.parametrize("value", GARBAGE)
def test_pacer_backs_off_on_a_garbage_retry_after(value: str) -> None:
    pacer = AccountPacer(backoff_base=1.0, max_wait=60.0)
    assert pacer.acquire(0.0)
    pacer.on_response(0.0, 429, {"retry-after": value})
    assert pacer.blocked_until == 1.0


@given(remaining=hint_text, limit=hint_text, reset=hint_text, status=st.sampled_from([200, 429]))
def test_pacer_survives_any_rate_limit_headers(
    remaining: str, limit: str, reset: str, status: int
) -> None:
    pacer = AccountPacer(max_wait=60.0)
    assert pacer.acquire(0.0)
    headers = {"ratelimit-limit": limit, "ratelimit-remaining": remaining, "ratelimit-reset": reset}
    pacer.on_response(0.0, status, headers)
    delay = pacer.delay(0.0)
    assert not math.isnan(delay) and (delay <= 60.0 or delay == math.inf)
    assert pacer.avail is None or pacer.avail >= -1
