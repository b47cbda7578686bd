"""One row never takes a bulk run down: whatever its shape, it ends with one outcome and a reason.

Open-ended row shapes come from hypothesis; faults in the per-row steps (prepare, key derivation,
sending) are injected. The property every time: the run returns, every row has exactly one
outcome, and a healthy sentinel row after the odd one is still applied.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
from typing import Any

import httpx2
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tests.conftest import TOKEN
from tests.unit.bulk.conftest import make_engine, opp_id, run
from truto_airflow.bulk.engine import BulkSettings

FIELDS = ["name", "amount", "close_date", "status", "description", "custom_fields", "remote_data"]


class Odd:
    """An object no JSON encoder knows."""

    def __repr__(self) -> str:
        return "<Odd>"


class Exploding:
    """An object whose str/format/eq raise: even describing it must not crash the run."""

    def __str__(self) -> str:
        raise RuntimeError("str exploded")

    def __format__(self, spec: str) -> str:
        raise RuntimeError("format exploded")

    def __repr__(self) -> str:
        return "<Exploding>"  # hypothesis prints examples with repr()

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("eq exploded")

    __hash__ = object.__hash__


def odd_scalars() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.integers(min_value=10**300, max_value=10**400),
        st.floats(allow_nan=True, allow_infinity=True),
        st.decimals(allow_nan=True, allow_infinity=True),
        st.text(),  # includes lone surrogates
        st.binary(max_size=8),
        st.sampled_from(
            [
                "2026-01-01T00:00:00+99:00",
                "2026-13-45",
                "9999-12-31T23:59:59-23:59",
                "\ud800",
                "a" * 70_000,
                dt.datetime(2026, 1, 1),
                dt.date(2026, 1, 1),
                dt.timedelta(days=1),
                decimal.Decimal("1e400"),
                math.nan,
                {1, 2},
                frozenset(),
                b"\xff",
                bytearray(b"x"),
                ...,
            ]
        ),
        st.builds(Odd),
        st.builds(Exploding),
        st.builds(object),
    )


json_like = st.recursive(
    odd_scalars(),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.one_of(st.text(max_size=5), st.integers(), st.binary()), inner),
        st.dictionaries(st.sampled_from(FIELDS), inner, max_size=3),
    ),
    max_leaves=6,
)

row_shapes = st.one_of(
    json_like,
    st.fixed_dictionaries(
        {"id": json_like, "body": json_like},
        optional={"integrated_account_id": json_like, "extra": json_like},
    ),
    st.fixed_dictionaries(
        {
            "id": st.one_of(st.text(), odd_scalars()),
            "body": st.dictionaries(st.sampled_from(FIELDS), json_like, max_size=3),
        }
    ),
)


def ok(request: httpx2.Request) -> httpx2.Response:
    return httpx2.Response(200, json={"id": opp_id(request)})


SENTINEL = {"id": "sentinel", "body": {"amount": 1}}


def assert_isolated(summary: dict[str, Any], rows: int) -> None:
    assert summary["rows"] == rows
    assert sum(summary["outcomes"].values()) == rows
    assert summary["outcomes"]["updated"] >= 1  # the sentinel
    for rejected in summary["rejected"]["rows"]:
        assert rejected["message"], rejected
        assert "\n" not in rejected["message"]
        assert TOKEN not in rejected["message"]


@given(odd=row_shapes)
@example(odd={"id": None, "body": {"\n": None}})  # a key with a newline once made a 2-line reason
def test_no_row_shape_aborts_the_run(odd: Any) -> None:
    sent: list[str] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        sent.append(opp_id(request))
        return ok(request)

    engine = make_engine(
        handler, settings=BulkSettings(max_concurrency=2, progress_every_seconds=None)
    )
    summary = run(engine, [odd, SENTINEL])
    assert_isolated(summary, 2)
    assert "sentinel" in sent


@pytest.mark.parametrize(
    "body",
    [
        {"close_date": "2026-01-01T00:00:00+99:00"},
        {"amount": b"12"},
        {"custom_fields": {"x": b"\xff"}},
        {"custom_fields": {"x": Odd()}},
        {"custom_fields": {Odd(): 1}},
        {"name": "\ud800"},
        {"remote_data": {"x": Exploding()}},
    ],
    ids=["bad-offset", "bytes", "bad-utf8", "object", "object-key", "surrogate", "exploding"],
)
def test_known_crashers_end_invalid_with_a_reason(body: dict[str, Any]) -> None:
    summary = run(make_engine(ok), [{"id": "odd", "body": body}, SENTINEL])
    assert_isolated(summary, 2)
    assert summary["outcomes"] == {"updated": 1, "failed": 0, "invalid": 1}
    (row,) = summary["rejected"]["rows"]
    assert row["row"] == 0 and row["id"] == "odd"


@pytest.mark.parametrize(
    "opp", ["\ud800", "a" * 100_000, "x\udcff"], ids=["surrogate", "100KB", "lone-low"]
)
def test_ids_that_cannot_be_sent_end_the_row_not_the_run(opp: str) -> None:
    summary = run(make_engine(ok), [{"id": opp, "body": {"amount": 1}}, SENTINEL])
    assert_isolated(summary, 2)
    assert summary["outcomes"]["updated"] == 1
    assert summary["outcomes"]["invalid"] + summary["outcomes"]["failed"] == 1


@pytest.mark.parametrize(
    "exc",
    [
        RuntimeError("prepare blew up"),
        UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"),
        KeyError("x"),
        OverflowError("too big"),
        RecursionError("deep"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_any_exception_while_preparing_one_row_ends_only_that_row(
    exc: Exception, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(ok)
    real = engine.hook.build_update

    def flaky(opportunity_id: Any, *args: Any, **kwargs: Any) -> Any:
        if opportunity_id == "bad":
            raise exc
        return real(opportunity_id, *args, **kwargs)

    monkeypatch.setattr(engine.hook, "build_update", flaky)
    summary = run(engine, [{"id": "bad", "body": {"amount": 1}}, SENTINEL])
    assert_isolated(summary, 2)
    assert summary["outcomes"] == {"updated": 1, "failed": 0, "invalid": 1}
    (row,) = summary["rejected"]["rows"]
    assert type(exc).__name__ in row["message"]


@pytest.mark.parametrize(
    ("exc", "outcome"),
    [
        (httpx2.InvalidURL("URL too long"), "invalid"),
        (UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"), "invalid"),
        (ValueError(f"bad header value near {TOKEN}"), "invalid"),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else v,
)
def test_any_exception_while_sending_one_row_ends_only_that_row(
    exc: Exception, outcome: str
) -> None:
    calls: list[str] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        calls.append(opp_id(request))
        if opp_id(request) == "bad":
            raise exc
        return ok(request)

    rows = [{"id": "bad", "body": {"amount": 1}}, SENTINEL]
    summary = run(make_engine(handler), rows)
    assert_isolated(summary, 2)
    assert summary["outcomes"][outcome] == 1
    assert calls.count("bad") == 1  # not retried: it cannot go better
    (row,) = summary["rejected"]["rows"]
    assert type(exc).__name__ in row["message"]


@pytest.mark.parametrize(
    "answer",
    [
        httpx2.Response(200, text="<html>Sign in</html>", headers={"content-type": "text/html"}),
        httpx2.Response(
            200, content=b'{"id": "bad", "am', headers={"content-type": "application/json"}
        ),
        httpx2.Response(200, json=["bad"]),
    ],
    ids=["html", "truncated", "list"],
)
def test_a_2xx_that_is_not_a_json_object_fails_the_row(answer: httpx2.Response) -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        if opp_id(request) == "bad":
            return httpx2.Response(
                answer.status_code, content=answer.content, headers=answer.headers
            )
        return ok(request)

    ledger_rows: list[str] = []
    engine = make_engine(handler)
    engine.ledger.record = ledger_rows.append  # type: ignore[method-assign]
    summary = run(engine, [{"id": "bad", "body": {"amount": 1}}, SENTINEL])
    assert_isolated(summary, 2)
    assert summary["outcomes"] == {"updated": 1, "failed": 1, "invalid": 0}
    (row,) = summary["rejected"]["rows"]
    assert row["status_code"] == 200 and row["error"] == "unexpected_response"
    assert "not treated as a success" in row["message"]
    assert len(ledger_rows) == 1  # only the sentinel is recorded as applied
