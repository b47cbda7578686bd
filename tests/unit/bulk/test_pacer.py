"""The per-account pacer, driven by a fake clock (no sleeping anywhere)."""

from __future__ import annotations

import math

import pytest

from truto_airflow.bulk.pacer import AccountPacer, RateLimitInfo


def rl(limit: int, remaining: int, reset: int, **extra: str) -> dict[str, str]:
    return {
        "ratelimit-limit": f"{limit};w=10",
        "ratelimit-remaining": str(remaining),
        "ratelimit-reset": str(reset),
        **extra,
    }


def test_header_parsing() -> None:
    info = RateLimitInfo.from_headers(rl(110, 7, 3))
    assert info == RateLimitInfo(limit=110, remaining=7, reset_s=3.0)
    assert RateLimitInfo.from_headers({"ratelimit-limit": "5"}) == RateLimitInfo(5, None, None)
    assert RateLimitInfo.from_headers({"content-type": "application/json"}) is None
    odd = RateLimitInfo.from_headers({"ratelimit-remaining": "x", "ratelimit-reset": "-1"})
    assert odd is None


def test_first_request_is_a_single_probe() -> None:
    pacer = AccountPacer()
    assert pacer.acquire(0.0)
    assert pacer.delay(0.0) == math.inf
    assert not pacer.acquire(0.0)
    pacer.on_response(0.02, 200, {})
    assert pacer.avail is None  # no published limit: unpaced
    assert all(pacer.acquire(0.02) for _ in range(50))


def test_budget_is_spent_then_waits_for_the_reset() -> None:
    pacer = AccountPacer()
    assert pacer.acquire(0.0)
    pacer.on_response(0.02, 200, rl(5, 4, 10))
    assert pacer.window_end == pytest.approx(10.02)
    assert [pacer.acquire(0.03) for _ in range(5)] == [True, True, True, True, False]
    assert pacer.delay(0.03) == pytest.approx(9.99)
    # Answers from the same window tighten the reset estimate (ceil'd seconds).
    pacer.on_response(0.5, 200, rl(5, 0, 10))  # implies 10.5: looser, ignored
    pacer.on_response(1.05, 200, rl(5, 0, 9))  # implies 10.05: looser, ignored
    pacer.on_response(1.9, 200, rl(5, 0, 8))  # implies 9.9: the tightest bound so far
    assert pacer.window_end == pytest.approx(9.9)
    assert not pacer.acquire(9.85)
    assert pacer.acquire(9.91)  # a new window: the budget refills
    assert pacer.avail == 5 - 1 - 1  # limit, minus one still in flight, minus this send


def test_in_flight_requests_count_against_remaining() -> None:
    pacer = AccountPacer()
    pacer.acquire(0.0)
    pacer.on_response(0.01, 200, rl(100, 99, 10))
    for _ in range(10):
        pacer.acquire(0.02)
    # remaining=80 while 9 of ours are still in flight: at most 71 more may go.
    pacer.on_response(0.03, 200, rl(100, 80, 10))
    assert pacer.avail == 80 - 9


def test_stale_answer_from_the_previous_window_is_ignored() -> None:
    pacer = AccountPacer()
    pacer.acquire(0.0)
    pacer.on_response(0.01, 200, rl(3, 2, 10))
    assert pacer.acquire(0.02) and pacer.acquire(0.02)
    assert pacer.acquire(10.02)  # rolled into the next window
    # An answer to an old-window request arrives late: must not shrink or stretch anything.
    pacer.on_response(10.03, 200, rl(3, 0, 1))
    assert pacer.window_end is None
    pacer.on_response(10.05, 200, rl(3, 2, 10))
    assert pacer.window_end == pytest.approx(20.05)


def test_429_blocks_for_retry_after_then_probes_once() -> None:
    pacer = AccountPacer()
    pacer.acquire(0.0)
    pacer.on_response(0.01, 200, rl(10, 9, 10))
    pacer.acquire(1.0)
    pacer.acquire(1.0)
    pacer.on_response(1.1, 429, rl(10, 0, 7, **{"retry-after": "7"}))
    assert pacer.throttled_for(1.1) == 0.0
    assert pacer.delay(2.0) == pytest.approx(6.1)
    assert pacer.delay(8.2) == math.inf  # the other request is still out
    pacer.on_response(8.2, 429, {"retry-after": "2"})
    assert pacer.throttled_for(9.0) == pytest.approx(7.9)
    assert pacer.acquire(10.3)
    assert not pacer.acquire(10.3)  # half-open: one probe
    pacer.on_response(10.4, 200, rl(10, 9, 10))
    assert pacer.throttled_since is None
    assert pacer.acquire(10.4)


def test_429_without_hints_backs_off_exponentially() -> None:
    pacer = AccountPacer(backoff_base=1.0, max_wait=5.0)
    waits = []
    now = 0.0
    for _ in range(5):
        assert pacer.acquire(now)
        pacer.on_response(now, 429, {})
        waits.append(pacer.blocked_until - now)
        now = pacer.blocked_until
    assert waits == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_max_in_flight_per_account() -> None:
    pacer = AccountPacer(max_in_flight=2)
    pacer.acquire(0.0)
    pacer.on_response(0.0, 200, {})
    assert pacer.acquire(0.0) and pacer.acquire(0.0)
    assert not pacer.acquire(0.0)
    pacer.release()
    assert pacer.acquire(0.0)
